"""Apply a plan to a model: reversibly (analysis) or physically (saving).

Both ways swap the same submodules for the stubs in `hprune.model.stubs`, so a
reversible removal and a physical one compute the same function. Reversible
removal keeps the originals aside and puts them back: no weight is copied and
the model is bit-identical afterwards.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from contextlib import contextmanager

import torch
import torch.nn as nn

from hprune.model import get_adapter
from hprune.model.base import Adapter, Swap
from hprune.model.stubs import SkippedBlock
from hprune.model.units import NORM_MODES, Unit
from hprune.core.errors import HpruneError
from hprune.core.provenance import record, steps_of

# AdaLN chunk layouts by number of chunks -> positions of the gates.
# 6: AdaLayerNormZero, 9: SD35AdaLayerNormZeroX, 3: AdaLayerNormZeroSingle,
# 2: AdaLayerNormContinuous (scale, shift; no gate).
_GATES = {6: (2, 5), 9: (2, 5, 8), 3: (2,), 2: ()}


def identity_modulation(linear: nn.Linear) -> torch.Tensor:
    """Shift 0, scale 0, gate 1: the norm becomes a plain LayerNorm and every
    branch it gates passes at full strength."""
    dim = linear.in_features
    chunks = linear.out_features // dim
    value = torch.zeros(chunks, dim, dtype=torch.float32)
    value[list(_GATES[chunks])] = 1.0
    return value.flatten()


def _norm_constant(adapter: Adapter, model, unit: Unit, mode: str, norm_means: dict | None) -> torch.Tensor:
    linear = adapter.norm_linear(model, unit)
    if mode == "identity":
        value = identity_modulation(linear)
    elif norm_means is None or unit.key not in norm_means:
        raise HpruneError(
            f"removing {unit} in norm mode 'mean' needs its calibrated mean modulation; "
            "run calibrate_norms on calibration inputs (or use norm mode 'identity')."
        )
    else:
        value = norm_means[unit.key]
    return value.to(device=linear.weight.device, dtype=torch.float32)


def _check(adapter: Adapter, model, units: list[Unit], norm_mode: str) -> None:
    if norm_mode not in NORM_MODES:
        raise HpruneError(f"norm mode must be one of {NORM_MODES}, got '{norm_mode}'.")
    adapter.check_units(model, units)
    whole = {u for u in units if u.is_block}
    both = [str(u) for u in units if not u.is_block and u.block_unit() in whole]
    if both:
        raise HpruneError(f"{', '.join(both)} belong to blocks that are removed whole; list only the block.")


def plan_swaps(model, units, norm_mode="identity", norm_means=None, physical=False) -> list[Swap]:
    """Every module swap that removes `units` (indices of the current model)."""
    adapter = get_adapter(model)
    units = sorted(set(units))
    _check(adapter, model, units, norm_mode)
    by_block: dict[tuple[str, int], set[str]] = defaultdict(set)
    swaps = []
    for unit in units:
        if unit.is_block:
            blocks = adapter.block_list(model, unit.kind)
            skipped = SkippedBlock(getattr(blocks[unit.index], "context_pre_only", False) or False)
            swaps.append(Swap(blocks, str(unit.index), skipped))
        else:
            by_block[(unit.kind, unit.index)].add(unit.sub)
    for (kind, index), subs in by_block.items():
        consts = {s: _norm_constant(adapter, model, Unit(kind, index, s), norm_mode, norm_means)
                  for s in subs if Unit(kind, index, s).is_norm}
        swaps += adapter.swaps(model, kind, index, subs, consts, physical)
    return swaps


@contextmanager
def removed(model: nn.Module, units, norm_mode: str = "identity", norm_means: dict | None = None):
    """Temporarily remove `units`; the original modules are restored on exit."""
    swaps = plan_swaps(model, [Unit.parse(u) if isinstance(u, str) else u for u in units], norm_mode, norm_means)
    originals = [getattr(s.parent, s.name) for s in swaps]
    try:
        for swap in swaps:
            setattr(swap.parent, swap.name, swap.new)
        yield model
    finally:
        for swap, original in zip(reversed(swaps), reversed(originals)):
            setattr(swap.parent, swap.name, original)


def prune_(model: nn.Module, plan, norm_means: dict | None = None) -> nn.Module:
    """Physically remove the plan's units in place; whole blocks are deleted,
    the rest re-indexed, and the config updated. Frees the removed weights.

    The plan names units by their index in the original model. On a model
    pruned before, units already gone are skipped and the rest are translated
    to the current indices, so `prune_(prune_(m, a), b)` equals `prune_(m, a | b)`;
    the step is recorded in the model's history (hprune.core.provenance).
    `norm_means` (unit key in original indices -> modulation) serves plans in norm mode 'mean'.
    Raises HpruneError for a plan of another architecture or a quantized model."""
    adapter = get_adapter(model)
    check_plan_matches(adapter, model, plan)
    if steps_of(model, "quantize"):
        raise HpruneError("this model is quantized; prune the 16-bit model, then quantize the result.")
    bmap = adapter.block_map(model)
    units = adapter.to_current(model, plan.units)
    means = None if norm_means is None else _current_keys(bmap, norm_means)
    record(model, "prune", plan=plan.to_dict())
    subs = [u for u in units if not u.is_block]
    for swap in plan_swaps(model, subs, plan.norm_mode, means, physical=True):
        setattr(swap.parent, swap.name, swap.new)
    blocks = [u for u in units if u.is_block]
    if blocks:
        adapter.check_units(model, blocks)
        adapter.delete_blocks(model, blocks)
        gc.collect()  # deleted blocks may sit in reference cycles (hooks, caches)
    return model


def _current_keys(bmap, by_unit: dict) -> dict:
    """Re-key a dict of unit keys (original indices) by current indices; removed blocks drop out."""
    current = {key: bmap.to_current(Unit.parse(key)) for key in by_unit}
    return {unit.key: by_unit[key] for key, unit in current.items() if unit is not None}


def check_plan_matches(adapter: Adapter, model: nn.Module, plan) -> None:
    """Raise HpruneError unless `plan` was made for `model`'s original architecture."""
    check_plan_signature(plan, adapter.family, adapter.signature(model))


def check_plan_signature(plan, family: str, signature: dict) -> None:
    """Raise HpruneError unless `plan` was made for the architecture `signature` describes."""
    if plan.family != family or plan.arch != signature:
        raise HpruneError(
            f"the plan was made for a {plan.arch.get('class', plan.family)} with {_describe(plan.arch)}, "
            f"but this model is a {signature['class']} with {_describe(signature)}; "
            "make a plan for this model (`hprune plan` or `hprune prune --remove-blocks`)."
        )


def _describe(arch: dict) -> str:
    parts = [f"{arch[k]} {k.replace('num_', '').replace('_', ' ')}" for k in ("num_layers", "num_single_layers") if k in arch]
    if "num_attention_heads" in arch and "attention_head_dim" in arch:
        parts.append(f"width {arch['num_attention_heads'] * arch['attention_head_dim']}")
    return ", ".join(parts)


@torch.no_grad()
def calibrate_norms(model: nn.Module, inputs, units=None) -> dict[str, torch.Tensor]:
    """Mean AdaLN modulation of each norm unit over calibration inputs.

    `inputs` is an iterable of kwargs for `model(**kw)`. The mean is taken over
    every call (batch items and the timesteps the inputs cover)."""
    adapter = get_adapter(model)
    norm_units = [info.unit for info in adapter.units(model) if info.unit.is_norm]
    if units is not None:
        norm_units = [u for u in norm_units if u in set(units)]
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = defaultdict(int)

    def hook_for(key):
        def hook(_module, _args, output):
            flat = output.detach().float().reshape(-1, output.shape[-1])
            sums[key] = sums.get(key, 0) + flat.sum(0)
            counts[key] += flat.shape[0]
        return hook

    handles = [adapter.norm_linear(model, u).register_forward_hook(hook_for(u.key)) for u in norm_units]
    try:
        for kwargs in inputs:
            model(**kwargs)
    finally:
        for h in handles:
            h.remove()
    return {key: (total / counts[key]).cpu() for key, total in sums.items()}
