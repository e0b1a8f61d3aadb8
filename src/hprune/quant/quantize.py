"""Post-training 4-bit weight quantization of a diffusion transformer (stage 3).

One config, one in-place entry: `quantize_(model, QuantConfig(backend=...))`.
Backends live in hprune.quant. The step is recorded in the model's history, so
`hprune.save` writes a folder that `hprune.load` restores with any backend
(bnb-nf4 folders also load in plain diffusers, through the
`quantization_config` in config.json, when no subcomponent was pruned).

Which layers stay 16-bit: `skip` takes glob patterns of full module names
(e.g. "proj_out" or "*.norm1.linear") for layers to keep. Left at None, it is
the backend's default (hprune.quant.names.DEFAULT_SKIP): w4fp8 keeps the input
embedders and the final proj_out (about 0.1% of the weights); the other
backends quantize every nn.Linear, as in the authors' code. `skip=()` keeps
none. A backend also keeps the layers its kernel cannot take (w4fp8: layers
left with no inputs by pruning), and the result lists every kept layer.

Rounding: "nearest" rounds each weight to its closest int4 code; "gptq"
(w4fp8, one scale per row) rounds against the layer's inputs while the model
draws a few calibration prompts (hprune.quant.gptq, hprune.quant.calibration):
same format, same speed, less output error. `hprune quantize` uses GPTQ for
w4fp8 whenever the model comes with its pipeline.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from hprune.core.errors import HpruneError
from hprune.core.provenance import record, steps_of
from hprune.quant import backends, get_backend
from hprune.quant.names import DEFAULT_BACKEND, DEFAULT_SKIP, ROUNDINGS

COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class QuantConfig:
    backend: str = DEFAULT_BACKEND
    group_size: int | None = None  # inputs per scale; 0 = one per row (w4fp8 only). None: w4fp8 0 (its fast path), else 128
    skip: tuple[str, ...] | None = None  # glob patterns of layers kept in 16 bit; None: DEFAULT_SKIP[backend]
    compute_dtype: str = "bfloat16"
    double_quant: bool = True  # bnb-nf4: quantize the block scales too (the paper's setting)
    rounding: str = "nearest"  # or "gptq" (w4fp8 per row): needs a Calibration, see quantize_

    def __post_init__(self):
        if self.skip is None:
            self.skip = DEFAULT_SKIP.get(self.backend, ())
        self.skip = (self.skip,) if isinstance(self.skip, str) else tuple(self.skip)
        if self.group_size is None:
            self.group_size = 0 if self.backend == "w4fp8" else 128
        problems = []
        if self.backend not in backends():
            problems.append(f"backend '{self.backend}' is not one of {sorted(backends())}")
        if self.group_size not in (0, 32, 64, 128, 256):
            problems.append(f"group_size {self.group_size} is not one of 0, 32, 64, 128, 256")
        if self.backend == "w4fp8" and self.group_size not in (0, 128):
            problems.append("backend w4fp8 takes group_size 128 or 0 (one scale per row)")
        if self.rounding not in ROUNDINGS:
            problems.append(f"rounding '{self.rounding}' is not one of {ROUNDINGS}")
        elif self.rounding == "gptq" and (self.backend != "w4fp8" or self.group_size != 0):
            problems.append("rounding 'gptq' takes backend w4fp8 with one scale per row (group_size 0)")
        if self.compute_dtype not in COMPUTE_DTYPES:
            problems.append(f"compute_dtype '{self.compute_dtype}' is not one of {sorted(COMPUTE_DTYPES)}")
        elif self.backend.startswith("torchao-int4") and self.compute_dtype != "bfloat16":
            problems.append(f"backend {self.backend} computes in bfloat16 only (torchao's int4 layouts)")
        if problems:
            raise HpruneError("invalid quantization config: " + "; ".join(problems) + ".")

    @property
    def torch_compute_dtype(self) -> torch.dtype:
        return COMPUTE_DTYPES[self.compute_dtype]


@dataclass
class QuantResult:
    backend: str
    quantized: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # linears left in 16 bit, by `skip` or the kernel


def select_linears(model: nn.Module, config: QuantConfig) -> QuantResult:
    backend = get_backend(config.backend)
    result = QuantResult(config.backend)
    for name, module in model.named_modules():
        if type(module) is not nn.Linear:
            continue
        (result.kept if matches_skip(name, config.skip) or not backend.supports(module, config) else result.quantized).append(name)
    return result


def matches_skip(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether the full module `name` matches one of the glob `patterns` (fnmatch, case-sensitive)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def unmatched_patterns(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """The `patterns` that match no nn.Linear of `model` (a typo in `--skip`, or a layer pruning removed)."""
    names = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    return [p for p in patterns if not any(matches_skip(n, (p,)) for n in names)]


def quantize_(model: nn.Module, config: QuantConfig, calibration=None, hessian_budget_gib: float | None = None) -> QuantResult:
    """Replace the model's linear layers by 4-bit ones, in place.

    `calibration` (a hprune.quant.calibration.Calibration) is needed for rounding "gptq" and
    ignored otherwise; GPTQ collects the layers' H = X^T X in float32 in rounds of at most
    `hessian_budget_gib` (default: half the GPU's free memory, or 4 GiB on CPU), one calibration
    pass per round. Raises HpruneError for an already quantized model, a config that leaves no
    layer, or GPTQ without calibration."""
    backend = get_backend(config.backend)
    backend.check()
    if quant_state(model) is not None:
        raise HpruneError("this model is already quantized; quantize the 16-bit (pruned) model instead.")
    if config.rounding == "gptq" and calibration is None:
        raise HpruneError("rounding 'gptq' needs calibration images: pass calibration="
                          "hprune.quant.calibration.default_calibration(pipe), or use rounding 'nearest'.")
    result = select_linears(model, config)
    if not result.quantized:
        raise HpruneError(f"no linear layer to quantize (skip patterns {config.skip} took them all); loosen --skip.")
    extra = {}
    with torch.no_grad():
        if config.rounding == "gptq":
            extra["calibration"] = {**calibration.describe(), "passes": _convert_gptq(
                model, backend, result.quantized, config, calibration, hessian_budget_gib)}
        else:
            backend.convert(model, result.quantized, config)
    record(model, "quantize", config=asdict(config), quantized=result.quantized, kept=result.kept, **extra)
    return result


def _convert_gptq(model, backend, names, config, calibration, budget_gib) -> int:
    """Convert `names` with GPTQ rounding, in rounds whose H fit the budget; later rounds calibrate
    through the layers already in 4 bits (GPTQ's sequential order). Returns the passes run."""
    from hprune.quant.gptq import collect_hessians, hessian_rounds

    device = next(model.parameters()).device
    if budget_gib is None:
        budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 4 * 2**30
    else:
        budget = int(budget_gib * 2**30)
    rounds = hessian_rounds(model, names, budget)
    for chunk in rounds:
        hessians = collect_hessians(model, chunk, lambda: calibration.run(model))
        backend.convert(model, chunk, config, hessians=hessians)
        del hessians
    return len(rounds)


def quant_state(model: nn.Module) -> tuple[QuantConfig, QuantResult] | None:
    """How `model` was quantized (from its history), or None for a 16-bit model."""
    steps = steps_of(model, "quantize")
    if not steps:
        return None
    step = steps[-1]
    config = QuantConfig(**step["config"])
    return config, QuantResult(config.backend, list(step["quantized"]), list(step["kept"]))


def weight_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers as stored (quantized tensors count their packed size)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += _storage_bytes(t)
    for module in model.modules():  # bnb keeps its block scales beside the weight
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        total += _quant_state_bytes(state) if state is not None else 0
    return total


def _storage_bytes(t: torch.Tensor) -> int:
    inner = getattr(t, "__tensor_flatten__", None)
    if inner is not None and type(t) not in (torch.Tensor, nn.Parameter) and not hasattr(t, "quant_state"):
        names, _ = t.__tensor_flatten__()
        return sum(_storage_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def _quant_state_bytes(state) -> int:
    total = sum(x.numel() * x.element_size() for x in (state.absmax, state.code) if x is not None)
    return total + (_quant_state_bytes(state.state2) if getattr(state, "state2", None) is not None else 0)
