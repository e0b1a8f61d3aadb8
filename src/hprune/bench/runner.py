"""One benchmark run: the bf16 original and the compressed variants in one process.

A *variant* is a block plan (or none) plus a quantization backend (or none).
Every variant is built fresh from the published config, measured eager and,
if asked, with each block compiled (regional torch.compile), and compared
with the bf16 original measured the same way in the same process.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import torch

from hprune.bench import measure
from hprune.bench.archs import Arch, build_transformer, get_arch, make_inputs, set_timestep
from hprune.core.errors import HpruneError
from hprune.model.compile import compile_blocks_
from hprune.quant.names import BF16


ATTENTION = ("fastest", "default")


@dataclass
class Variant:
    name: str  # e.g. "original", "pruned-20%"
    plan: object = None  # callable(model) -> Plan, or None
    quant: str = BF16
    group_size: int | None = None  # None: the backend's default (QuantConfig)
    crop_to: int | None = None  # SD3: keep the position embeddings up to this many pixels a side


@dataclass
class BenchConfig:
    arch: str
    resolution: int = 1024
    steps: int = 4
    batch: int = 1
    compile: bool = False
    eager: bool = True
    repeats: int = 10
    warmup: int = 3
    breakdown: bool = False
    cuda_graph: bool = False  # also time each compiled model replayed from one CUDA graph per step
    text_encoders: bool = False
    t5_quant: str | None = None
    attention: str = "fastest"  # "fastest": hprune's SDPA choice (hprune.model.attention); "default": torch's
    variants: list[Variant] = field(default_factory=list)

    def __post_init__(self):
        problems = []
        get_arch(self.arch)
        if self.resolution % 16:
            problems.append(f"--resolution must be a multiple of 16, got {self.resolution}")
        if self.repeats < 10:
            problems.append(f"--repeats must be at least 10 (median of >= 10), got {self.repeats}")
        if self.steps < 1:
            problems.append(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 1:
            problems.append(f"--batch must be at least 1, got {self.batch}")
        if self.attention not in ATTENTION:
            problems.append(f"--attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        if not (self.eager or self.compile):
            problems.append("nothing to measure: neither eager nor --compile")
        if problems:
            raise HpruneError("invalid bench settings: " + "; ".join(problems) + ".")


def check_gpu() -> None:
    if not torch.cuda.is_available():
        raise HpruneError("hprune bench needs a CUDA GPU and none is visible; run it on a GPU machine.")


def run(config: BenchConfig, log=print, on_row=None) -> tuple[list[dict], dict]:
    """Rows for the original and every variant; extras (breakdowns, text encoders) beside them."""
    check_gpu()
    torch._dynamo.config.cache_size_limit = 64  # every variant adds guards to the same block code
    torch._dynamo.config.accumulated_cache_size_limit = 512
    arch = get_arch(config.arch)
    extras: dict = {"breakdown_ms": {}}
    rows, baseline = [], {}
    for variant in [Variant("original"), *config.variants]:
        try:
            for row, breakdown in _measure_variant(arch, variant, config, log):
                base = baseline.setdefault(_mode(row), row) if variant.name == "original" else baseline[_mode(row)]
                rows.append(_finish(row, base, baseline.get("eager")))
                if breakdown:
                    extras["breakdown_ms"][_label(rows[-1])] = breakdown
                log(markdown_row(rows[-1]))
                if on_row is not None:
                    on_row(rows, extras)
        except Exception as err:  # one broken backend must not lose the rest of the table
            if variant.name == "original":
                raise
            extras.setdefault("failed", {})[f"{variant.name} {variant.quant}"] = f"{type(err).__name__}: {str(err)[:400]}"
            log(f"FAILED {variant.name} {variant.quant}: {type(err).__name__}: {str(err)[:400]}")
            gc.collect()
            torch.cuda.empty_cache()
    if config.text_encoders:
        from hprune.bench.text_encoders import encoder_memory

        t5_tokens = arch.text_tokens - (77 if arch.family == "sd3" else 0)
        extras["text_encoders"] = encoder_memory(arch.text_encoders, t5_tokens, config.t5_quant)
        for row in rows:
            row["text_encoders"] = with_encoders(row, extras["text_encoders"])
    return rows, extras


def _measure_variant(arch: Arch, variant: Variant, config: BenchConfig, log):
    gc.collect()
    torch.cuda.empty_cache()
    baseline_bytes = torch.cuda.memory_allocated()
    model, params = _build(arch, variant)
    attention = _choose_attention(model, config.attention)
    kwargs = make_inputs(arch, model, config.resolution, config.batch)
    modes = ([False] if config.eager else []) + ([True] if config.compile else [])
    for compiled in modes:
        if compiled:  # the user's path: hprune generate --compile
            compile_blocks_(model, fullgraph=False, dynamic=False)
        step = measure.time_step_ms(model, kwargs, config.warmup, config.repeats)
        total = measure.time_steps_ms(model, kwargs, _timesteps(config.steps), lambda kw, t: set_timestep(arch, kw, t))
        peak = measure.peak_step_gib(model, kwargs, baseline_bytes)
        breakdown = measure.kernel_breakdown(model, kwargs) if config.breakdown else None
        yield dict(_row(arch, variant, config, compiled, params, model, step, total, peak), attention=attention), breakdown
        if compiled and config.cuda_graph:
            yield dict(_graphed_row(arch, variant, config, params, model, kwargs, baseline_bytes), attention=attention), None
    del model, kwargs
    gc.collect()
    torch.cuda.empty_cache()


def _choose_attention(model, setting: str) -> str:
    from hprune.model.attention import DEFAULT, restore_default_attention, use_fastest_attention

    if setting == "fastest":
        return use_fastest_attention(model)
    restore_default_attention()
    return DEFAULT


def _graphed_row(arch, variant, config, params, model, kwargs, baseline_bytes) -> dict:
    """The user's path (`hprune generate --cuda-graph`): every call copies its inputs into the
    captured ones, replays, and clones the output. Peak: the capture's (warm-up included)."""
    from hprune.model.cuda_graph import CudaGraphSteps

    graphed = CudaGraphSteps(model)
    peak = measure.peak_step_gib(graphed, kwargs, baseline_bytes)  # the first call captures
    step = measure.time_step_ms(graphed, kwargs, config.warmup, config.repeats)
    total = measure.time_steps_ms(graphed, kwargs, _timesteps(config.steps), lambda kw, t: set_timestep(arch, kw, t))
    row = _row(arch, variant, config, True, params, model, step, total, peak)
    del graphed
    return dict(row, cuda_graph=True)


def _mode(row: dict) -> str:
    return "compiled+graph" if row.get("cuda_graph") else "compiled" if row["compiled"] else "eager"


def _build(arch: Arch, variant: Variant):
    from hprune.model import get_adapter
    from hprune.quant.quantize import QuantConfig, quantize_
    from hprune.prune.surgery import prune_

    model = build_transformer(arch)
    if variant.plan is not None:
        plan = variant.plan(model)
        prune_(model, plan)
        model._hprune_bench_plan = plan
    params = get_adapter(model).total_params(model)
    if variant.crop_to:
        from hprune.model.pos_embed import crop_pos_embed

        crop_pos_embed(model, variant.crop_to)
    if variant.quant != BF16:
        quantize_(model, QuantConfig(backend=variant.quant, group_size=variant.group_size))
    gc.collect()
    torch.cuda.empty_cache()
    return model, params


def _timesteps(steps: int) -> list[float]:
    return [1.0 - i / steps for i in range(steps)]


def _row(arch, variant, config, compiled, params, model, step, total, peak) -> dict:
    from hprune.quant.quantize import quant_state, weight_bytes

    state = quant_state(model)
    return {
        "arch": arch.name, "variant": variant.name, "ratio": _ratio(variant, model), "quant": _quant_label(variant),
        "compiled": compiled, "params": params, "weights_gib": round(weight_bytes(model) / measure.GIB, 3),
        "peak_gib": round(peak, 3), "step_ms": round(step, 2), "steps": config.steps, "total_ms": round(total, 1),
        "resolution": config.resolution, "batch": config.batch, "pos_embed_cropped": bool(variant.crop_to),
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "kept_16bit": None if state is None else state[1].kept,  # linears the backend left in 16 bit
    }


def _quant_label(variant: Variant) -> str:
    if variant.quant == "w4fp8":
        return "w4fp8-g128" if variant.group_size == 128 else "w4fp8-perrow"
    return variant.quant


def _ratio(variant: Variant, model) -> float:
    plan = getattr(model, "_hprune_bench_plan", None)
    return round(plan.ratio_reached, 4) if plan is not None and plan.ratio_reached is not None else 0.0


def _finish(row: dict, base: dict, base_eager: dict | None) -> dict:
    row["speedup_vs_bf16"] = round(base["step_ms"] / row["step_ms"], 3)
    row["speedup_vs_bf16_eager"] = round(base_eager["step_ms"] / row["step_ms"], 3) if base_eager else None
    row["memory_ratio"] = round(row["peak_gib"] / base["peak_gib"], 4)
    order = ["arch", "variant", "ratio", "quant", "compiled", "params", "weights_gib", "peak_gib", "step_ms",
             "speedup_vs_bf16", "speedup_vs_bf16_eager", "memory_ratio", "device", "torch"]
    return {**{k: row[k] for k in order}, **{k: v for k, v in row.items() if k not in order}}


def with_encoders(row: dict, enc: dict) -> dict:
    """Peak when the encoders stay resident: the larger of (transformer peak + encoder weights)
    and (encoder peak + transformer weights)."""
    peak = max(row["peak_gib"] + enc["weights_gib"], enc["peak_gib"] + row["weights_gib"])
    return {"t5_quant": enc["t5_quant"], "weights_gib": enc["weights_gib"], "peak_gib_total": round(peak, 3)}


def _label(row: dict) -> str:
    return f"{row['arch']} {row['variant']} {row['quant']} {_mode(row)}"


HEADER = ("| arch | variant | ratio | quant | compiled | batch | params (B) | weights GiB | peak GiB | ms/step | "
          "x vs bf16 | x vs bf16 eager | memory ratio | total ms (steps) |\n|" + " --- |" * 14)


def markdown_row(r: dict) -> str:
    eager = "" if r["speedup_vs_bf16_eager"] is None else f"{r['speedup_vs_bf16_eager']:.2f}"
    return (f"| {r['arch']} | {r['variant']} | {r['ratio']:.3f} | {r['quant']} | {_mode(r)} | {r.get('batch', 1)} | "
            f"{r['params'] / 1e9:.2f} | {r['weights_gib']:.2f} | {r['peak_gib']:.2f} | {r['step_ms']:.1f} | "
            f"{r['speedup_vs_bf16']:.2f} | {eager} | {r['memory_ratio']:.3f} | {r['total_ms']:.0f} ({r['steps']}) |")
