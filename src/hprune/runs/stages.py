"""The stages of `hprune run`, in order. Each takes the RunContext, writes its output
under the run folder (atomically, or resumably where the tool behind it resumes),
and returns a one-line summary. A stage only starts when the ones before it finished.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from hprune.runs.context import RunContext


def analysis(ctx: RunContext) -> str:
    from hprune.analysis.profile import profile

    cfg = ctx.recipe.analysis
    rows = profile(ctx.pipe(), cfg, ctx.layout.analysis, model_name=ctx.model, progress=ctx.progress)
    return f"{len(rows)} variants scored on {cfg.n_prompts} prompts with {cfg.metric}"


def plan(ctx: RunContext) -> str:
    from hprune.planning.scoring import load_run, plan_for_run

    settings = ctx.recipe.plan
    made = plan_for_run(load_run(ctx.layout.analysis), "hpp", ctx.ratio, alpha=settings.alpha,
                        r_thres=settings.r_thres, tolerance=settings.tolerance)
    ctx.layout.plan.parent.mkdir(parents=True, exist_ok=True)
    made.save(ctx.layout.plan)
    return (f"HPP: {len(made.units)} units, {made.ratio_reached:.1%} of parameters removed "
            f"(target {ctx.ratio:.0%}, r_thres {made.r_thres:g}, alpha {made.alpha:g})")


def prune(ctx: RunContext) -> str:
    from hprune.folders import save
    from hprune.planning.plan import Plan
    from hprune.prune.surgery import prune_

    teacher = ctx.pipe().transformer
    model = prune_(copy.deepcopy(teacher), Plan.load(ctx.layout.plan), ctx.norm_means())
    save(model, ctx.layout.pruned, overwrite=True)
    before, after = _params(teacher), _params(model)
    return f"{before:,} -> {after:,} parameters ({1 - after / before:.1%} removed)"


def distill(ctx: RunContext) -> str:
    from hprune.distill import distill as train
    from hprune.distill.sensitivity import load_sensitivity
    from hprune.folders import save
    from hprune.planning.plan import Plan

    if ctx.recipe.data.source == "none":
        return "skipped (data.source = none): the pruned model is not trained"
    cfg = _distill_config(ctx)
    sensitivity = load_sensitivity(ctx.layout.analysis / "contribution.jsonl") if cfg.sgdistill else None
    data = _data(ctx)
    student = train(ctx.pipe().transformer, Plan.load(ctx.layout.plan), data, cfg, ctx.layout.distill,
                    sensitivity=sensitivity, norm_means=ctx.norm_means(), resume=True, progress=ctx.progress)
    save(student.eval(), ctx.layout.distilled, overwrite=True)
    kind = "PWP" + (" + SGDistill" if cfg.sgdistill else "") if cfg.pwp else "plain"
    return f"{kind}, {cfg.steps} steps x {cfg.batch_size} on {len(data)} examples ({ctx.recipe.data.source})"


def _distill_config(ctx: RunContext):
    above = ctx.recipe.data.sgdistill_above
    return replace(ctx.recipe.distill, sgdistill=ctx.recipe.distill.sgdistill or (above is not None and ctx.ratio > above))


def _data(ctx: RunContext):
    """The distillation data, built once and cached in the distill folder (keyed by what made it)."""
    from hprune.distill.sources import build_data, cached_data, teacher_data

    spec, settings, seed = ctx.recipe.data.source, ctx.recipe.data, ctx.recipe.distill.seed
    if not spec.startswith("teacher"):
        return build_data(spec, ctx.pipe(), ctx.layout.distill, settings.resolution, seed, progress=ctx.progress)
    n = int(spec.split(":", 1)[1]) if ":" in spec else 256
    prompts = _calibration_prompts(ctx, n)
    size = None if ctx.is_shapes else settings.resolution

    def make():
        return teacher_data(ctx.pipe(), prompts, seed=seed + 10_000, steps=ctx.recipe.analysis.steps, size=size,
                            batch_size=ctx.recipe.evaluate.batch_size, progress=ctx.progress)

    return cached_data(ctx.layout.distill, (spec, size, seed, prompts), make)


def _calibration_prompts(ctx: RunContext, n: int) -> list[str]:
    """n training prompts: the shapes world's train split, or the analysis prompt file cycled."""
    if ctx.is_shapes:
        import numpy as np

        from hprune.toy.splits import sample_training_batch

        return list(sample_training_batch(np.random.default_rng(ctx.recipe.distill.seed), n, split="train")[0])
    from hprune.runs.prompts import read_prompts

    lines = read_prompts(ctx.recipe.analysis.prompts)
    return [lines[i % len(lines)] for i in range(n)]


def quantize(ctx: RunContext) -> str:
    from hprune.folders import save

    source = ctx.layout.distilled if ctx.layout.distilled.is_dir() else ctx.layout.pruned
    backend = ctx.recipe.quantize.backend
    if backend == "none":
        final, summary = source, "no quantization"
    else:
        from hprune.quant.quantize import QuantConfig, quantize_

        model = ctx.load_model(source)
        config = QuantConfig(backend=backend, rounding=_rounding(ctx))
        result = quantize_(model, config, calibration=_calibration(ctx) if config.rounding == "gptq" else None)
        save(model, ctx.layout.quantized, overwrite=True)
        how = " (GPTQ rounding)" if config.rounding == "gptq" else ""
        final, summary = ctx.layout.quantized, f"{backend}{how}: {_describe_quant(result)}"
    model = ctx.load_model(final)
    if backend == "none":  # trained in float32 maybe; shipped in the teacher's own dtype
        cast_(model, _teacher_dtype(ctx))
    save(model, ctx.layout.model, source=ctx.model, overwrite=True)
    return f"{summary}; the compressed model is {ctx.layout.model}"


def _rounding(ctx: RunContext) -> str:
    from hprune.quant.names import DEFAULT_ROUNDING

    rounding = ctx.recipe.quantize.rounding
    return DEFAULT_ROUNDING.get(ctx.recipe.quantize.backend, "nearest") if rounding == "auto" else rounding


def _calibration(ctx: RunContext):
    """GPTQ's calibration images: the model draws the shapes train split, or the analysis prompts."""
    from hprune.quant.calibration import default_calibration

    from hprune.runs.prompts import read_prompts

    prompts = None if ctx.is_shapes else read_prompts(ctx.recipe.analysis.prompts)
    return default_calibration(ctx.pipe(), prompts, batch_size=ctx.recipe.evaluate.batch_size)


def cast_(model, dtype) -> None:
    """model.to(dtype), without diffusers' "modules ... should be kept in float32: []" warning where
    the model keeps no module in float32: diffusers (0.42) warns on every cast, even then."""
    import logging

    if getattr(model, "_keep_in_fp32_modules", None):  # a real warning: let it through
        model.to(dtype)
        return
    logger = logging.getLogger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model.to(dtype)
    finally:
        logger.setLevel(level)


def _teacher_dtype(ctx: RunContext):
    from hprune.folders.paths import model_folder
    from hprune.folders.weights import stored_dtype

    return stored_dtype(model_folder(ctx.model))


def _describe_quant(result) -> str:
    quantized, kept = getattr(result, "quantized", None), getattr(result, "kept", None) or []
    if quantized is None:
        return "done"
    return f"{len(quantized)} layers in 4 bits" + (f", {len(kept)} kept in 16 bit ({', '.join(kept[:3])}"
                                                     f"{', ...' if len(kept) > 3 else ''})" if kept else "")


def generate(ctx: RunContext) -> str:
    from hprune.runs.samples import generate_variants

    counts = generate_variants(ctx)
    return ", ".join(f"{name} {n}" for name, n in counts.items()) + " images"


def evaluate(ctx: RunContext) -> str:
    from hprune.runs.scores import write_memory, write_scores

    scores = write_scores(ctx)
    write_memory(ctx)
    parts = [f"{v['name']} {_fmt(v.get('degradation'))}" for v in scores["variants"][1:]]
    return "degradation: " + ", ".join(parts) if parts else "teacher scored"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def report(ctx: RunContext) -> str:
    from hprune.report.run_page import write_report

    html, md = write_report(ctx.layout.root)
    return f"{html} (and {md.name})"


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


STAGE_FUNCTIONS = {"analysis": analysis, "plan": plan, "prune": prune, "distill": distill, "quantize": quantize,
                   "generate": generate, "evaluate": evaluate, "report": report}
