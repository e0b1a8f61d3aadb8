"""Latency and memory of the teacher's and the compressed transformer, on a CUDA GPU.

Both run one denoising step on the same inputs: those the teacher's pipeline
passes its transformer when it draws the first evaluation prompt (captured by a
forward pre-hook, so the shapes and dtypes are the pipeline's own). Time is the
median of 10 steps after 3 warm-up steps (hprune.bench.measure.time_step_ms,
eager); peak memory is the transformer's weights plus the step's activation peak.
"""

from __future__ import annotations

from dataclasses import replace

from hprune.runs.context import RunContext

GIB = 1024**3


def bench_block(ctx: RunContext) -> dict | None:
    """The MEMORY "bench" block (hprune.folders.run_layout), or None without a GPU."""
    import torch

    if ctx.device != "cuda":
        return None
    kwargs = _step_inputs(ctx)
    teacher = ctx.pipe().transformer
    compressed = ctx.load_model(ctx.layout.model)
    (t_ms, t_gib), (c_ms, c_gib) = _measure(teacher, kwargs), _measure(compressed, kwargs)
    return {"device": torch.cuda.get_device_name(), "teacher_ms_per_step": t_ms, "compressed_ms_per_step": c_ms,
            "teacher_peak_gib": t_gib, "compressed_peak_gib": c_gib}


def _step_inputs(ctx: RunContext) -> dict:
    from hprune.model.sampling import PromptSeed, make_sampler
    from hprune.runs.samples import eval_items

    item = eval_items(ctx)[0]
    pipe = ctx.pipe()
    config = replace(ctx.recipe.analysis.sampling(), steps=1, batch_size=1)
    captured = {}

    def grab(_module, _args, kwargs):
        captured.setdefault("kwargs", {k: v.clone() if hasattr(v, "clone") else v for k, v in kwargs.items()})

    handle = pipe.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        make_sampler(pipe, config, [PromptSeed(item.prompt, item.seed)]).images()
    finally:
        handle.remove()
    return captured["kwargs"]


def _measure(model, kwargs: dict) -> tuple[float, float]:
    import torch

    from hprune.bench.measure import time_step_ms

    ms = time_step_ms(model, kwargs)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(**kwargs)
    torch.cuda.synchronize()
    activations = torch.cuda.max_memory_allocated() - before
    weights = sum(t.nbytes for t in (*model.parameters(), *model.buffers()))
    return round(ms, 3), round((weights + activations) / GIB, 4)
