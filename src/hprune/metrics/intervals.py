"""Error bars for the ablation tables: a row's interval over seeds, and a paired
bootstrap over prompts for "ours vs the best baseline".

Both work on ShapesEval's per-image scores of one evaluation set (the same
prompts and sampling seeds for the teacher and every row):
`ImageScores(semantic, quality, category)`, one value per image. Degradation
is the mean relative drop of the semantic score (mean over categories of each
category's share of correct images) and the quality score (mean over images),
as in `hprune.experiments.ablate.degradation`.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class ImageScores:
    semantic: np.ndarray  # 0/1 per image
    quality: np.ndarray   # [0, 1] per image (its set-level Frechet term included, as in the report)
    category: np.ndarray  # category index per image

    def to_arrays(self, prefix: str = "") -> dict:
        """For `np.savez`; several sets share one file under different prefixes."""
        return {f"{prefix}semantic": self.semantic, f"{prefix}quality": self.quality, f"{prefix}category": self.category}

    @classmethod
    def from_npz(cls, data, prefix: str = "") -> "ImageScores":
        return cls(*(np.asarray(data[f"{prefix}{k}"]) for k in ("semantic", "quality", "category")))

    @classmethod
    def from_report(cls, per_prompt: list[dict], categories: tuple[str, ...]) -> "ImageScores":
        return cls(np.array([float(r["correct"]) for r in per_prompt]), np.array([r["quality"] for r in per_prompt]),
                   np.array([categories.index(r["category"]) for r in per_prompt]))


def t_interval(values: list[float], level: float = 0.95) -> list[float]:
    """Student-t interval of the mean over seeds; one value gives the point itself
    (a row without distillation does not depend on the seed)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return [float(x.mean()), float(x.mean())]
    half = t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def _scores(s: ImageScores, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, quality) of each resample; idx: (resamples, images) indices into s, which keep
    every category's count (`stratified_indices`)."""
    sem, cat = s.semantic[idx], s.category[idx]
    per_cat = [np.where(cat == c, sem, 0).sum(1) / (cat == c).sum(1) for c in np.unique(s.category)]
    return np.mean(per_cat, axis=0), s.quality[idx].mean(1)


def _degradation(teacher: tuple, row: tuple) -> np.ndarray:
    """Per resample; a score the teacher does not earn (0) has no relative drop and is left out."""
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = np.stack([np.where(t > 0, (t - r) / t, np.nan) for t, r in zip(teacher, row)])
    return np.nanmean(drops, axis=0) if np.isfinite(drops).any(axis=0).all() else np.full(drops.shape[1], np.nan)


def stratified_indices(category: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resample images within each category, so every resample keeps the evaluation set's mix."""
    cols = [rng.choice(np.flatnonzero(category == c), size=(resamples, int((category == c).sum())))
            for c in np.unique(category)]
    return np.concatenate(cols, axis=1)


def seed_mean_degradation(teacher: ImageScores, seeds: list[ImageScores], idx: np.ndarray) -> np.ndarray:
    ref = _scores(teacher, idx)
    return np.mean([_degradation(ref, _scores(s, idx)) for s in seeds], axis=0)


def paired_bootstrap(teacher: ImageScores, ours: list[ImageScores], baseline: list[ImageScores],
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Degradation of ours minus the baseline's (each the mean over its seeds), with the same
    prompts resampled for the teacher and both rows (stratified by category).

    `p_not_better` is the share of resamples where ours degrades at least as much as the
    baseline (a one-sided bootstrap p-value); `baseline_over_ours` is left out where ours
    does not degrade in some resample (the ratio is then undefined)."""
    idx = stratified_indices(teacher.category, resamples, np.random.default_rng(seed))
    full = np.arange(len(teacher.category))[None]
    ours_b, base_b = seed_mean_degradation(teacher, ours, idx), seed_mean_degradation(teacher, baseline, idx)
    ours_0, base_0 = (float(seed_mean_degradation(teacher, x, full)[0]) for x in (ours, baseline))
    diff = ours_b - base_b
    out = {"resamples": resamples, "diff": ours_0 - base_0,
           "diff_ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
           "p_not_better": float((diff >= 0).mean())}
    if ours_0 > 0 and (ours_b > 0).all():
        ratio = base_b / ours_b
        out["baseline_over_ours"] = base_0 / ours_0
        out["baseline_over_ours_ci95"] = [float(np.percentile(ratio, 2.5)), float(np.percentile(ratio, 97.5))]
    return out
