"""`hprune eval DIR`: score a generation folder with ShapesEval.

Prints the semantic score per category, the overall semantic and quality
scores, and the same scores of exact renders of the same scenes (the ceiling
the teachers' quality bar is relative to). Writes DIR/eval.json with keys
`semantic`, `quality`, `per_category`, plus `reference` and `per_prompt`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from hprune.core.errors import HpruneError
from hprune.core.files import write_json
from hprune.generate.images import read_records


def add_arguments(parser) -> None:
    parser.add_argument("dir", help="a folder written by `hprune generate`")
    parser.add_argument("--no-reference", action="store_true", help="skip scoring exact renders of the same scenes")


def run(args) -> int:
    result = evaluate_dir(args.dir, reference=not args.no_reference, progress=True)
    print(format_table(result))
    print(f"wrote {Path(args.dir) / 'eval.json'}")
    return 0


def evaluate_dir(folder: str | Path, reference: bool = True, progress: bool = False) -> dict:
    """Score every image of a generation folder; writes and returns eval.json's content."""
    from hprune.toy.shapes_eval import evaluate

    folder = Path(folder)
    records = [r for _, r in sorted(read_records(folder).items())]
    if not records:
        raise HpruneError(f"{folder} has no generated images (no generations.jsonl); run `hprune generate` first.")
    scenes = [_scene(r) for r in records]
    images = np.stack([_load(folder / r["path"]) for r in tqdm(records, desc="load", unit="img", disable=not progress)])
    report = evaluate(images, scenes)
    result = {"semantic": report.semantic, "quality": report.quality, "per_category": report.per_category,
              "n": len(records)}
    if reference:
        renders = _renders(records, scenes, progress)
        ref = evaluate(renders, scenes)
        result["reference"] = {"semantic": ref.semantic, "quality": ref.quality, "per_category": ref.per_category}
        result["quality_ratio"] = report.quality / ref.quality if ref.quality else None
    result["per_prompt"] = [{**p, "path": r["path"]} for p, r in zip(report.per_prompt, records)]
    write_json(folder / "eval.json", result, indent=2)
    return result


def _scene(record: dict):
    from hprune.toy.prompts import parse
    from hprune.toy.world import Scene

    return Scene.from_dict(record["scene"]) if "scene" in record else parse(record["prompt"])


def _load(path: Path) -> np.ndarray:
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as err:
        raise HpruneError(f"cannot read image {path} ({err}); re-run `hprune generate` into that folder to redraw it.")


def _renders(records: list[dict], scenes, progress: bool) -> np.ndarray:
    """Exact renders of the same scenes, one picture per record's seed."""
    from hprune.toy.render import render_scene

    pairs = tqdm(list(zip(scenes, records)), desc="render", unit="img", disable=not progress)
    return np.stack([render_scene(scene, r["seed"]) for scene, r in pairs])


def format_table(result: dict) -> str:
    ref = result.get("reference", {})
    rows = [f"{'category':<16}{'semantic':>10}{'renders':>10}"]
    for name, value in result["per_category"].items():
        rows.append(f"{name:<16}{_semantic(value):>10.3f}{_fmt(_semantic(ref.get('per_category', {}).get(name))):>10}")
    rows.append(f"{'semantic':<16}{result['semantic']:>10.3f}{_fmt(ref.get('semantic')):>10}")
    rows.append(f"{'quality':<16}{result['quality']:>10.3f}{_fmt(ref.get('quality')):>10}")
    if result.get("quality_ratio") is not None:
        rows.append(f"quality / renders' quality = {result['quality_ratio']:.3f}   ({result['n']} images)")
    return "\n".join(rows)


def _semantic(value):
    """A category's semantic score, whether ShapesEval gives a number or a {semantic, quality, n} dict."""
    return value.get("semantic") if isinstance(value, dict) else value


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


