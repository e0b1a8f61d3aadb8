"""The generate stage: every variant draws the same prompts from the same seeds.

One sampler (hprune.model.sampling's, the loop the analysis draws with too) holds the
prompts, a diffusers pipeline's encoded once; each variant's transformer is swapped into the
teacher's pipeline.
Each variant's folder is written whole or not at all, in `hprune generate`'s
format (so `hprune eval` and `hprune study create` read it), with `model.json`
({"params": int, "folder": str | None}) beside the images.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hprune.core.files import write_json
from hprune.generate.images import Item, write_generation
from hprune.runs.context import RunContext
from hprune.folders.run_layout import VARIANTS

MODEL_INFO = "model.json"


def eval_items(ctx: RunContext) -> list[Item]:
    """The evaluation prompts: a shapes split's set (fixed seeds, equal images per category),
    or the first `n_prompts` of a prompt file (image i from seed i)."""
    settings = ctx.recipe.evaluate
    if ctx.is_shapes:
        from hprune.toy.prompts import parse
        from hprune.toy.splits import eval_set

        return [Item(e.prompt, e.seed, parse(e.prompt).to_dict()) for e in eval_set(settings.split, settings.per_category)]
    from hprune.runs.prompts import read_prompts

    prompts = read_prompts(settings.prompts or ctx.recipe.analysis.prompts)[: settings.n_prompts]
    return [Item(p, i) for i, p in enumerate(prompts)]


def variant_folders(ctx: RunContext) -> dict[str, Path | None]:
    """variant -> its model folder (None: the teacher itself), for the stages that ran."""
    layout = ctx.layout
    found = {"teacher": None, "pruned": layout.pruned, "distilled": layout.distilled, "quantized": layout.quantized}
    return {name: found[name] for name in VARIANTS if found[name] is None or found[name].is_dir()}


def generate_variants(ctx: RunContext) -> dict[str, int]:
    """Draw every variant not drawn yet; returns variant -> number of images."""
    from hprune.core.atomic import atomic_folder
    from hprune.model.sampling import PromptSeed, make_sampler

    items, pipe = eval_items(ctx), ctx.pipe()
    steps = ctx.recipe.evaluate.steps or ctx.recipe.analysis.steps
    config = replace(ctx.recipe.analysis.sampling(), steps=steps, batch_size=ctx.recipe.evaluate.batch_size)
    sampler = make_sampler(pipe, config, [PromptSeed(i.prompt, i.seed) for i in items])
    settings = {"model": ctx.model, "steps": steps, "guidance": sampler.guidance}
    counts = {}
    for name, folder in variant_folders(ctx).items():
        out = ctx.layout.samples(name)
        if not (out / MODEL_INFO).is_file():
            model = pipe.transformer if folder is None else ctx.load_model(folder)
            images = _draw(sampler, pipe, model, name, ctx.progress)
            with atomic_folder(out, overwrite=True) as tmp:
                write_generation(tmp, items, [i.seed for i in items], images, settings)
                write_json(tmp / MODEL_INFO, {"params": _params(ctx, name, model), "folder": str(folder) if folder else None})
        counts[name] = len(items)
    return counts


def _draw(sampler, pipe, model, name: str, progress: bool):
    """The sampler's images (in order) drawn by `model`, a bar over its denoising steps."""
    from tqdm.auto import tqdm

    teacher = pipe.transformer
    pipe.transformer = model
    bar = tqdm(total=len(sampler.batches) * sampler.steps, desc=f"generate {name}", unit="step", disable=not progress)
    try:
        return sampler.images(on_step=lambda _share: bar.update(1))
    finally:
        bar.close()
        pipe.transformer = teacher


def _params(ctx: RunContext, name: str, model) -> int:
    """Parameters in the model's own terms; a 4-bit model has the count of the model it quantized
    (packed weights are not parameters one can compare)."""
    if name == "quantized":
        source = ctx.layout.distilled if ctx.layout.distilled.is_dir() else ctx.layout.pruned
        model = ctx.load_model(source)
    return sum(p.numel() for p in model.parameters())
