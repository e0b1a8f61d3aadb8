"""The evaluate stage: score every variant's samples, compare with the teacher.

Writes scores.json and memory.json (formats in hprune.folders.run_layout). The shapes
testbed is scored with ShapesEval (semantic and quality, per category); a real
model with the recipe's metric (`clip:/path`, `hps:/path`, ...), each component
per image. Standard errors are over the prompts: std / sqrt(n).
Degradation is the mean relative drop of the metric's components against the
teacher (for ShapesEval: semantic and quality, as hprune.experiments.ablate.degradation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hprune.core.files import write_json
from hprune.runs.context import RunContext
from hprune.folders.run_layout import VARIANT_STAGE, VARIANTS
from hprune.runs.samples import MODEL_INFO

VARIANT_SCORES = "scores.json"  # in samples/<variant>/: its entry of the run's scores.json, before degradation


def write_scores(ctx: RunContext) -> dict:
    from hprune.metrics import get_metric

    spec = ctx.recipe.evaluate.metric or ctx.recipe.analysis.metric
    metric = get_metric(spec, device=ctx.device)
    drop_keys = [c for c in metric.components if c != metric.primary] or [metric.primary]
    variants = []
    for name in VARIANTS:
        folder = ctx.layout.samples(name)
        if (folder / MODEL_INFO).is_file():
            variants.append(_scored(name, folder, metric, ctx.is_shapes))
    teacher = variants[0]
    for entry in variants:
        entry["degradation"] = None if entry is teacher else _degradation(teacher, entry, drop_keys)
    scores = {"metric": spec, "split": ctx.recipe.evaluate.split if ctx.is_shapes else "prompts",
              "n": teacher["n"], "variants": variants}
    write_json(ctx.layout.scores, scores, indent=2)
    return scores


def _scored(name: str, folder: Path, metric, shapes: bool) -> dict:
    """A variant's entry, scored once and kept beside its samples: a stopped evaluation resumes
    by variant, and `hprune run --status` counts the variants scored."""
    path = folder / VARIANT_SCORES
    if path.is_file():
        return json.loads(path.read_text())
    entry = _score_variant(name, folder, metric, shapes)
    write_json(path, entry, indent=2)
    return json.loads(path.read_text())  # as a resume reads it, so both give the same scores.json


def _score_variant(name: str, folder: Path, metric, shapes: bool) -> dict:
    from hprune.generate.images import read_records

    records = [r for _, r in sorted(read_records(folder).items())]
    images = np.stack([_image(folder / r["path"]) for r in records])
    entry = {"name": name, "stage": VARIANT_STAGE[name], "n": len(records),
             "params": json.loads((folder / MODEL_INFO).read_text())["params"]}
    if shapes:  # ShapesEval once: the report's fields and the per-image components
        fields, values = _shapes_fields(images, records)
        entry.update(fields)
    else:
        values = metric.score(images, [r["prompt"] for r in records])
    entry["components"] = {k: {"mean": float(np.mean(v)), "se": _se(v)} for k, v in values.items()}
    return entry


def _shapes_fields(images: np.ndarray, records: list[dict]) -> tuple[dict, dict]:
    from hprune.toy.shapes_eval import evaluate

    report = evaluate(images, _scenes(records))
    semantic = np.array([float(p["correct"]) for p in report.per_prompt])
    quality = np.array([float(p["quality"]) for p in report.per_prompt])
    fields = {"semantic": report.semantic, "quality": report.quality, "semantic_se": _se(semantic),
              "quality_se": _se(quality), "per_category": report.per_category}
    return fields, {"score": (semantic + quality) / 2, "semantic": semantic, "quality": quality}


def _scenes(records: list[dict]):
    from hprune.toy.world import Scene

    return [Scene.from_dict(r["scene"]) for r in records]


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _se(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _degradation(teacher: dict, entry: dict, keys: list[str]) -> float | None:
    """Mean relative drop over `keys`; a component the teacher scores 0 on has none."""
    means = lambda e: {k: e["components"][k]["mean"] for k in keys}
    ref, got = means(teacher), means(entry)
    drops = [(ref[k] - got[k]) / abs(ref[k]) for k in keys if ref[k]]
    return float(np.mean(drops)) if drops else None


def write_memory(ctx: RunContext) -> dict:
    """Parameters and stored weight bytes of the teacher's and the compressed transformer."""
    from hprune.folders.paths import model_folder
    from hprune.runs.bench import bench_block

    params = {name: json.loads((ctx.layout.samples(name) / MODEL_INFO).read_text())["params"]
              for name in VARIANTS if (ctx.layout.samples(name) / MODEL_INFO).is_file()}
    last = [name for name in VARIANTS if name in params][-1]
    memory = {"teacher": {"params": params["teacher"], "weight_bytes": _weight_bytes(model_folder(ctx.model))},
              "compressed": {"params": params[last], "weight_bytes": _weight_bytes(model_folder(ctx.layout.model))},
              "bench": bench_block(ctx)}
    write_json(ctx.layout.memory, memory, indent=2)
    return memory


def _weight_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".safetensors", ".pt", ".bin"))
