"""ShapesEval: the exact evaluator of the shapes testbed.

    from hprune.toy.shapes_eval import evaluate
    report = evaluate(images, scenes)      # uint8 (N, 64, 64, 3); Scene, dict or prompt each
    report.semantic, report.quality, report.per_category, report.per_prompt

- `semantic` (GenEval's role): each image is correct or not (see `semantic.py`);
  the score is the mean over categories of each category's mean.
- `quality` (HPSv2's role): a continuous score in [0, 1] (see `quality.py`),
  the mean over images.

Real renders of the test split score 1.0 on both up to the fréchet term's
sampling noise; tests in tests/metrics/test_shapes*.py hold the validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hprune.core.errors import HpruneError
from hprune.toy.shapes_eval.detect import Reading, check_image, read_image
from hprune.toy.shapes_eval.quality import FRECHET_MIN_IMAGES, PARTS, frechet, frechet_score, measure
from hprune.toy.shapes_eval.semantic import judge
from hprune.toy.prompts import describe, parse
from hprune.toy.render import render
from hprune.toy.world import CATEGORIES, Scene, realize

__all__ = ["evaluate", "read_image", "Reading", "ShapesReport", "as_scene"]

REFERENCE_SEED = 5_318_008
MIN_REFERENCES = 256


@dataclass
class ShapesReport:
    semantic: float
    quality: float
    per_category: dict[str, dict[str, float]]
    quality_parts: dict[str, float]
    per_prompt: list[dict] = field(repr=False)

    def to_json(self) -> dict:
        return {
            "semantic": self.semantic,
            "quality": self.quality,
            "per_category": self.per_category,
            "quality_parts": self.quality_parts,
        }


def as_scene(item: Scene | dict | str) -> Scene:
    if isinstance(item, Scene):
        return item
    if isinstance(item, dict):
        return Scene.from_dict(item)
    if isinstance(item, str):
        return parse(item)
    raise HpruneError(f"a scene is a Scene, its dict or a prompt string, got {type(item).__name__}.")


def as_images(images) -> list[np.ndarray]:
    return [check_image(np.asarray(im)) for im in images]


def evaluate(images, scenes: Sequence[Scene | dict | str], progress: bool = False) -> ShapesReport:
    """Score images against the scenes they should show."""
    images, scenes = as_images(images), [as_scene(s) for s in scenes]
    if len(images) != len(scenes) or not images:
        raise HpruneError(f"need one scene per image and at least one image; got {len(images)} images, {len(scenes)} scenes.")
    rows, feats = [], []
    for image, scene in _progress(zip(images, scenes), len(images), progress, "ShapesEval"):
        reading = read_image(image)
        correct, reason = judge(scene, reading)
        parts, feature_vector = measure(image, reading)
        rows.append({"prompt": describe(scene), "category": scene.category, "correct": correct, "reason": reason, **parts})
        feats.append(feature_vector)
    fd = frechet(np.stack(feats), reference_features(tuple(scenes))) if len(rows) >= FRECHET_MIN_IMAGES else None
    return _report(rows, fd)


def _report(rows: list[dict], fd: float | None) -> ShapesReport:
    terms = [] if fd is None else [frechet_score(fd)]
    for row in rows:
        values = [row[p] for p in PARTS] + terms
        row["quality"] = sum(values) / len(values)
    per_category = {}
    for category in CATEGORIES:
        members = [r for r in rows if r["category"] == category]
        if members:
            per_category[category] = {
                "semantic": float(np.mean([r["correct"] for r in members])),
                "quality": float(np.mean([r["quality"] for r in members])),
                "n": len(members),
            }
    parts = {p: float(np.mean([r[p] for r in rows])) for p in PARTS}
    parts.update(frechet=terms[0] if terms else None, frechet_distance=fd)
    return ShapesReport(
        semantic=float(np.mean([c["semantic"] for c in per_category.values()])),
        quality=float(np.mean([r["quality"] for r in rows])),
        per_category=per_category,
        quality_parts=parts,
        per_prompt=rows,
    )


_REFERENCE_CACHE: dict[tuple[Scene, ...], np.ndarray] = {}


def reference_features(scenes: tuple[Scene, ...]) -> np.ndarray:
    """Features of real renders of the same scenes (fresh layouts), cached per scene list."""
    if scenes not in _REFERENCE_CACHE:
        per_scene = -(-MIN_REFERENCES // len(scenes))
        feats = []
        for i, scene in enumerate(scenes):
            for k in range(per_scene):
                image = render(realize(scene, np.random.default_rng([REFERENCE_SEED, i, k])))
                feats.append(measure(image, read_image(image))[1])
        _REFERENCE_CACHE.clear()  # one scene list at a time: analysis re-scores one calibration set
        _REFERENCE_CACHE[scenes] = np.stack(feats)
    return _REFERENCE_CACHE[scenes]


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img")
