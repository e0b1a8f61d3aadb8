"""A short tour of the pieces, shorter than `hprune run` (README: "Try it").

1. A tiny random SD3 pipeline: prune two blocks, save, reload with plain
   diffusers, generate an image, print the unit table (seconds, no download).
2. The shipped `shapes-sd3` teacher: prune it with the committed HPP plan
   (results/analysis), draw held-out test prompts with the teacher and the
   pruned model, and score both with ShapesEval (a few minutes on CPU).

`python -m hprune.experiments.demo [--out DIR] [--per-category N]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from hprune.model import get_adapter
from hprune.planning.plan import Plan
from hprune.analysis.unit_table import format_table, unit_table
from hprune.folders import save
from hprune.prune.surgery import prune_
from hprune.model.testing import tiny_generate, tiny_pipeline


def tiny_sd3_demo(out: Path) -> None:
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    out.mkdir(parents=True, exist_ok=True)
    pipe = tiny_pipeline("sd3")
    pipe.save_pretrained(out / "original")
    model = pipe.transformer
    adapter = get_adapter(model)
    print(format_table(unit_table(model), adapter.total_params(model)))
    plan = Plan.for_model(model, ["joint.1", "joint.2"])
    prune_(model, plan)
    save(model, out / "pruned", source=out / "original", overwrite=True)
    print(f"\npruned blocks 1 and 2: {100 * plan.ratio_reached:.1f}% of parameters removed -> {out / 'pruned'}")
    reloaded = SD3Transformer2DModel.from_pretrained(out / "pruned" / "transformer")
    pipe2 = StableDiffusion3Pipeline.from_pretrained(out / "pruned", transformer=reloaded)
    image = tiny_generate(pipe2, "a red circle left of a blue square")
    path = out / "pruned.png"
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((128, 128)).save(path)
    print(f"reloaded with plain diffusers ({reloaded.config.num_layers} blocks) and generated {path}\n")
    print(format_table(unit_table(reloaded), get_adapter(reloaded).total_params(reloaded)))


SHAPES_PLAN = Path("results/analysis/shapes-sd3/plan-hpp-0.2.json")


def shapes_demo(per_category: int) -> None:
    """Teacher vs HPP-pruned teacher on the held-out split (no distillation)."""
    import copy

    from hprune.experiments.ablate import AblateConfig, degradation, score_transformer
    from hprune.toy.pipeline import load_pipeline

    if not SHAPES_PLAN.is_file():
        print(f"\n(skipping the shapes teacher: {SHAPES_PLAN} not found; run from the repository root)")
        return
    pipe = load_pipeline("shapes-sd3")
    plan = Plan.load(SHAPES_PLAN)
    pruned = prune_(copy.deepcopy(pipe.transformer), plan)
    cfg = AblateConfig(per_category=per_category, eval_batch=8)  # small batches: the bar moves every few seconds
    print(f"\nshapes-sd3: {per_category * 8} held-out test images, 8 steps, teacher vs HPP plan "
          f"({100 * plan.ratio_reached:.1f}% of parameters removed, no distillation)")
    teacher = score_transformer(pipe, pipe.transformer, cfg, progress=True)
    student = score_transformer(pipe, pruned, cfg, progress=True)
    print(f"{'model':<10} {'semantic':>9} {'quality':>8}")
    for name, scores in (("teacher", teacher), ("pruned", student)):
        print(f"{name:<10} {scores['semantic']:>9.3f} {scores['quality']:>8.3f}")
    drop = degradation(teacher, student)
    print("degradation: " + ("n/a" if drop is None else f"{100 * drop:.1f}%") + " (before distillation; see docs/distill.md)")


def main(out: Path, per_category: int = 8) -> None:
    tiny_sd3_demo(out)
    shapes_demo(per_category)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--per-category", type=int, default=8, help="held-out images per category")
    args = parser.parse_args()
    main(args.out, args.per_category)
