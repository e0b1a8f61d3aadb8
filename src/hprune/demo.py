"""The README's first command: build a tiny SD3 pipeline, prune two blocks,
save, reload with plain diffusers, generate an image and print the unit table.

Runs on CPU in seconds; no download. `python -m hprune.demo [--out DIR]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from hprune.arch import get_adapter
from hprune.inspect_units import format_table, unit_table
from hprune.io import save_pruned
from hprune.surgery import prune_
from hprune.testing import tiny_generate, tiny_pipeline


def main(out: Path) -> None:
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    out.mkdir(parents=True, exist_ok=True)
    pipe = tiny_pipeline("sd3")
    pipe.save_pretrained(out / "original")
    model = pipe.transformer
    adapter = get_adapter(model)
    print(format_table(unit_table(model), adapter.total_params(model)))
    plan = adapter.make_plan(model, ["joint.1", "joint.2"])
    prune_(model, plan)
    save_pruned(model, plan, out / "pruned", source=out / "original", overwrite=True)
    print(f"\npruned blocks 1 and 2: {100 * plan.ratio_reached:.1f}% of parameters removed -> {out / 'pruned'}")
    reloaded = SD3Transformer2DModel.from_pretrained(out / "pruned" / "transformer")
    pipe2 = StableDiffusion3Pipeline.from_pretrained(out / "pruned", transformer=reloaded)
    image = tiny_generate(pipe2, "a red circle left of a blue square")
    path = out / "pruned.png"
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((128, 128)).save(path)
    print(f"reloaded with plain diffusers ({reloaded.config.num_layers} blocks) and generated {path}\n")
    print(format_table(unit_table(reloaded), get_adapter(reloaded).total_params(reloaded)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    main(parser.parse_args().out)
