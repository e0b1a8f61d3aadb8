"""GPTQ rounding of int4 weights against calibration activations.

Round-to-nearest int4 minimises each weight's own error; GPTQ (Frantar et al.,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", ICLR 2023, Algorithm 1) minimises the layer's output error
||X W^T - X Q^T||^2 over calibration inputs X instead: it rounds one input
column at a time and spreads that column's rounding error over the columns
not yet rounded, weighted by the inverse of H = X^T X. The stored format is
unchanged (codes -8..7 and one scale per row, as `w4fp8.pack_int4`), so the
fast kernels and saved folders are the same; only the codes differ.

`collect_hessians` gathers H for chosen linears while a calibration function
runs the model (e.g. sampling a few prompts); layers fed the same tensor
(q, k and v) share one H. `gptq_codes` rounds one weight; `iter_gptq_codes`
rounds many, stacking layers of one shape so that they share each column step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn as nn

DAMP = 0.01  # H += DAMP * mean(diag H) * I, the reference implementation's percdamp
BLOCK = 128  # columns updated lazily together (Algorithm 1's B)
BATCH_BYTES = 2**31  # float32 weights + inverse Hessians of same-shape layers rounded together (iter_gptq_codes)


class _Accumulator:
    """Running H = sum over calibration tokens of x x^T (float32 [K, K]), for one input tensor."""

    def __init__(self):
        self.hessian, self.tokens = None, 0

    def add(self, x: torch.Tensor) -> None:
        x2 = x.detach().reshape(-1, x.shape[-1])
        if self.hessian is None:
            self.hessian = torch.zeros(x2.shape[1], x2.shape[1], dtype=torch.float32, device=x2.device)
        precision = torch.get_float32_matmul_precision()
        if x2.dtype in (torch.bfloat16, torch.float16):  # TF32 holds 16-bit inputs exactly and sums in float32: 8x faster
            torch.set_float32_matmul_precision("high")
        try:
            self.hessian.addmm_(x2.t().float(), x2.float())
        finally:
            torch.set_float32_matmul_precision(precision)
        self.tokens += x2.shape[0]


@contextmanager
def _input_hooks(model: nn.Module, names: list[str], sink: Callable[[str, torch.Tensor], None]):
    handles = [model.get_submodule(n).register_forward_pre_hook(lambda m, args, n=n: sink(n, args[0])) for n in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def collect_hessians(model: nn.Module, names: list[str], calibrate: Callable[[], object]) -> dict[str, torch.Tensor]:
    """H (float32 [in_features, in_features], on the layer's device) of every linear in `names`,
    summed over the input tokens `calibrate()` feeds it. Linears called one after another with
    the same input tensor (attention's to_q, to_k, to_v) share one H object.

    A layer `calibrate` never calls is left out of the result."""
    shared: dict[str, str] = {}  # layer -> the layer whose H it shares, decided on the first call
    acc = {n: _Accumulator() for n in names}
    last: list = [None, None]  # (layer, input) of the previous hook call

    def sink(name: str, x: torch.Tensor) -> None:
        if name not in shared:
            shared[name] = shared[last[0]] if last[1] is x else name
        if shared[name] == name:
            acc[name].add(x)
        last[:] = [name, x]

    with _input_hooks(model, names, sink), torch.no_grad():
        calibrate()
    last.clear()
    return {n: acc[shared[n]].hessian for n in names if n in shared}


def gptq_codes(weight: torch.Tensor, hessian: torch.Tensor, scale: torch.Tensor,
               damp: float = DAMP, block: int = BLOCK, act_order: bool = True) -> torch.Tensor:
    """int8 codes [N, K] in -8..7 of `weight` [N, K] with one fixed float `scale` per row ([N]),
    rounded by GPTQ against `hessian` [K, K] (Algorithm 1; columns in decreasing order of
    diag(H) when `act_order`, the reference implementation's --act-order). Computed in float32
    on the weight's device. Inputs never seen in calibration (diag(H) = 0) are rounded alone."""
    return gptq_codes_many([(weight, hessian, scale)], damp, block, act_order)[0]


def gptq_codes_many(layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], damp: float = DAMP,
                    block: int = BLOCK, act_order: bool = True, batch_bytes: int = BATCH_BYTES) -> list[torch.Tensor]:
    """gptq_codes of every (weight, hessian, scale) of `layers`, in their order (iter_gptq_codes)."""
    out: list[torch.Tensor | None] = [None] * len(layers)
    for i, codes in iter_gptq_codes(layers, damp, block, act_order, batch_bytes):
        out[i] = codes
    return out


def iter_gptq_codes(layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], damp: float = DAMP,
                    block: int = BLOCK, act_order: bool = True, batch_bytes: int = BATCH_BYTES):
    """Yields (index into `layers`, gptq_codes of that (weight, hessian, scale)), the same codes as one
    by one. Layers of one shape and device are rounded together, as many at a time as their float32
    weights and inverse Hessians (4 (N K + K^2) bytes each) fit `batch_bytes`: Algorithm 1 steps
    through the K columns one by one, a few small kernels per step, so on a GPU a model's hundreds of
    layers one at a time spend their time launching kernels; stacked, each step serves the whole batch
    (SD3.5 Large 20%, 422 layers, one H200: 200 s one by one, 44 s batched; docs/benchmarks.md)."""
    groups: dict[tuple, list[int]] = {}
    for i, (weight, _, _) in enumerate(layers):
        groups.setdefault((tuple(weight.shape), weight.device), []).append(i)
    for ((n, k), _), members in groups.items():
        per_batch = max(1, batch_bytes // (4 * (n * k + k * k)))
        for j in range(0, len(members), per_batch):
            batch = members[j:j + per_batch]
            yield from zip(batch, _gptq_batch([layers[i] for i in batch], damp, block, act_order))


def _gptq_batch(layers: list[tuple], damp: float, block: int, act_order: bool) -> list[torch.Tensor]:
    """Codes of same-shape layers, rounded in one stacked pass ([L, N, K], filled in place); a layer
    whose H stays not positive definite is rounded to nearest with a warning."""
    n, k = layers[0][0].shape
    device = layers[0][0].device
    w = torch.empty(len(layers), n, k, device=device)
    hinv = torch.empty(len(layers), k, k, device=device)
    s = torch.empty(len(layers), n, 1, device=device)
    orders, nearest = [], {}
    for i, (weight, hessian, scale) in enumerate(layers):
        h = hessian.float().clone()
        dead = torch.diagonal(h) == 0
        h[dead, dead] = 1.0
        order = torch.argsort(torch.diagonal(h), descending=True) if act_order else torch.arange(k, device=device)
        orders.append(order)
        s[i] = scale.float().view(-1, 1).clamp_min(1e-12)
        w[i] = weight.detach().float()[:, order]
        layer_hinv = _inverse_cholesky(h[order][:, order], damp)
        del h
        if layer_hinv is None:
            warnings.warn("GPTQ: a layer's H is not positive definite even with 100x the damping, in float64; "
                          "its weights are rounded to nearest", stacklevel=3)
            nearest[i] = (weight.detach().float() / s[i]).round().clamp(-8, 7).to(torch.int8)
            layer_hinv = torch.eye(k, device=device)  # a placeholder: this slot's codes are not used
        hinv[i] = layer_hinv
    codes = torch.empty_like(w, dtype=torch.int8)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        err = _round_block(w[..., i1:i2], hinv[:, i1:i2, i1:i2], s, codes[..., i1:i2])
        w[..., i2:] -= err @ hinv[:, i1:i2, i2:]
    return [nearest[i] if i in nearest else codes[i][:, torch.argsort(order)] for i, order in enumerate(orders)]


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor | None:
    """Upper Cholesky factor of (H + damping)^-1, Algorithm 1's Hinv. Where float32 finds the damped H
    not positive definite (inputs of very unequal scale: random-weight models at real size), the
    damping grows 10x, then 100x, then the last try is in float64; None if every try fails."""
    mean = torch.diagonal(h).mean()
    for factor, dtype in ((1, torch.float32), (10, torch.float32), (100, torch.float32), (100, torch.float64)):
        damped = h.to(dtype)
        damped.diagonal().add_(damp * factor * mean.to(dtype))
        lower, info = torch.linalg.cholesky_ex(damped)
        if info == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if info == 0 and torch.isfinite(upper).all():
                return upper.float()
    return None


def _round_block(w: torch.Tensor, hinv: torch.Tensor, s: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Round the columns of one block of L stacked layers in place (w, codes [L, N, B]; hinv
    [L, B, B]; s [L, N, 1]), each column after the earlier ones' errors were spread onto it;
    returns the scaled errors [L, N, B] that the columns after the block still take."""
    err = torch.empty_like(w)
    for i in range(w.shape[-1]):
        q = (w[..., i:i + 1] / s).round().clamp(-8, 7)
        codes[..., i:i + 1] = q.to(torch.int8)
        e = (w[..., i:i + 1] - q * s) / hinv[:, i:i + 1, i:i + 1]
        w[..., i:] -= e @ hinv[:, i:i + 1, i:]
        err[..., i:i + 1] = e
    return err


def hessian_rounds(model: nn.Module, names: list[str], budget_bytes: int) -> list[list[str]]:
    """`names` cut, in order, into runs whose H (in_features^2 float32 each, counted as if none
    were shared) fit `budget_bytes`; each run takes one calibration pass. A layer larger than
    the budget gets a run of its own."""
    rounds, size = [[]], 0
    for name in names:
        need = model.get_submodule(name).in_features ** 2 * 4
        if rounds[-1] and size + need > budget_bytes:
            rounds.append([])
            size = 0
        rounds[-1].append(name)
        size += need
    return [r for r in rounds if r]
