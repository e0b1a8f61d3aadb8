"""Print ShapesEval's validation table: real renders and graded corruptions.

    python -m hprune.toy.shapes_eval.validate [--split test] [--per-category 64]

Every row scores renders of the split's evaluation set, corrupted at one
level; the tests in tests/toy/shapes_eval/test_validate.py assert the same
behaviour on a smaller set. The table in docs/shapes.md is this command's output.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hprune.toy.shapes_eval import corruptions, evaluate
from hprune.toy.prompts import parse
from hprune.toy.render import render_scene
from hprune.toy.splits import eval_set

IMAGE_LEVELS = {
    "blur (gaussian sigma, px)": (corruptions.blur, (0.5, 0.7, 1.0, 1.5)),
    "noise (gaussian std, of 255)": (corruptions.noise, (4, 8, 16, 30)),
    "colour shift (hue rotation, deg)": (corruptions.color_shift, (8, 16, 24, 32)),
}
SCENE_SHARES = (0.25, 0.5, 1.0)


def validation_rows(split: str = "test", per_category: int = 64) -> list[tuple[str, str, object]]:
    """(corruption, level, report) rows, the clean renders first."""
    items = eval_set(split, per_category)
    scenes = [parse(item.prompt) for item in items]
    images = np.stack([render_scene(scene, item.seed) for scene, item in zip(scenes, items)])
    rows = [("none (exact renders)", "-", evaluate(images, scenes))]
    for name, (corrupt, levels) in IMAGE_LEVELS.items():
        rows += [(name, str(level), evaluate(corrupt(images, level), scenes)) for level in levels]
    multi = [i for i, s in enumerate(scenes) if len(s.objects) > 1]
    counting = [i for i, s in enumerate(scenes) if s.category == "counting"]
    for name, which, corrupt in (
        ("missing object (share of multi-object images)", multi, corruptions.drop_object),
        ("wrong count (share of counting images)", counting, corruptions.miscount),
    ):
        for share in SCENE_SHARES:
            out = images.copy()
            for i in which[: round(share * len(which))]:
                out[i] = corrupt(scenes[i], items[i].seed)
            rows.append((name, f"{share:.0%}", evaluate(out, scenes)))
    return rows


def format_rows(rows) -> str:
    lines = [
        "| corruption | level | semantic | quality | purity | sharpness | texture | fréchet |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, level, report in rows:
        q = report.quality_parts
        lines.append(
            f"| {name} | {level} | {report.semantic:.3f} | {report.quality:.3f} | {q['purity']:.3f} | "
            f"{q['sharpness']:.3f} | {q['texture']:.3f} | {q['frechet']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hprune.toy.shapes_eval.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--per-category", type=int, default=64)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = validation_rows(args.split, args.per_category)
    print(format_rows(rows))
    n = len(rows[0][2].per_prompt)
    print(f"\n{len(rows)} evaluations of {n} images each, {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
