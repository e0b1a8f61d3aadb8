"""`hprune profile --fast`: the contribution analysis on a few prompts and steps, its metric helped by an image distance.

The full analysis (hprune.analysis.profile) generates the whole calibration set again
for every variant (64 prompts, the teacher's 8 steps on the shapes testbed) and scores
it with the metric. The fast proxy generates only the first prompts of the same
category-balanced calibration set (8: one per shapes category) with a shorter sampling
loop (6 steps, or the model's own when fewer: 4 on few-step real models), once with the full model and once per variant, same seeds, and scores
each variant two ways on the same images:

- the metric's drop, as the full analysis does: dP_metric(v, p) = P(reference, p) - P(v, p);
- how far the removal moves the layout and colours of the full model's images: each
  image averaged to a GRID x GRID grid of mean colours (8 x 8; 8-pixel cells at the
  testbed's 64 px, 128-pixel cells at 1024 px),
  d(v, p) = sqrt( mean over cells and channels of (grid_v - grid)^2 )   (colours in [0, 1]);

and a unit's score is their sum, the distance weighted by GRID_WEIGHT:

    dP(v) = mean over prompts p of ( dP_metric(v, p) + GRID_WEIGHT * d(v, p) )

On the shapes teachers (ShapesEval, calibration prompts, against the full analysis;
scripts/profile_fast_study.py, results/profile_fast_study.json) the metric alone on 8
prompts ranks units at Spearman 0.824 / 0.894 (shapes-sd3 / shapes-flux) and the distance
alone at 0.895 / 0.841; their sum at 0.928 / 0.917, with 48 of the full analysis' 512
image-steps per variant (6/64 of its transformer forwards). Those numbers are the ones it
was chosen on; on fresh image seeds the same proxy gives 0.900 / 0.893
(results/profile_fast.json, `replicate_seed_1000`). Any GRID_WEIGHT from 3 to 6
gives 0.91 or more on both; the weight is in ShapesEval's units (a score in [0, 1]) and
has not been measured with another metric. Until 2026-11-30 the score was the distance
alone on 16 prompts at 2 steps (`grid-rms`, 0.842 / 0.834), before that the RMS of raw
pixels (`image-rms`).

The metric runs as in the full analysis (`--metric`; shapes by default, a diffusers
pipeline needs a learned metric's local weights). The run directory is the full
analysis' (config.json names the proxy; `hprune plan` reads it unchanged): the
reference images and scores in `reference.npz`, each variant one appended line of
`contribution.jsonl` with the score as `dP`, the metric's own drops (`dP_metric`,
`drops`, as a full row's) and the per-prompt distances (`grid`); a re-run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hprune.core.files import read_jsonl
from hprune.analysis.profile import (
    TABLE, ProfileConfig, append_row, calibration_set, check_fits, drop_row, finalize_table, load_reference,
    make_reference, prepare_run, repair_tail, variant_key, variants, without,
)
from hprune.metrics import check_scores, get_metric
from hprune.model.sampling import default_steps, make_sampler

FAST_STEPS = 6  # the proxy's sampling steps, unless the model's own schedule is shorter
GRID = 8  # cells per image side
GRID_WEIGHT = 5.0  # the distance's weight against the metric's drop
PROXY = "metric+5grid"


@dataclass
class FastProfileConfig(ProfileConfig):
    """The full analysis' settings with the proxy's defaults: the first `n_prompts` of the
    balanced calibration set, `steps` sampling steps (None: FAST_STEPS, or the model's own
    default when that is fewer, as FLUX.1 schnell's 4: `proxy_steps`)."""

    n_prompts: int = 8
    steps: int | None = None

    def proxy_steps(self, model_default: int) -> int:
        """The steps the proxy samples for a model whose own default is `model_default`."""
        return self.steps or min(FAST_STEPS, model_default)

    def settings(self) -> dict:
        return {**super().settings(), "proxy": PROXY}


def grid_colours(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, GRID, GRID, 3] mean colours in [0, 1] (any H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    return torch.nn.functional.adaptive_avg_pool2d(x, GRID).permute(0, 2, 3, 1).numpy()


def grid_distance(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per image: RMS over cells and channels of the grid colours' difference."""
    return np.sqrt(((grid_colours(images) - grid_colours(reference)) ** 2).reshape(len(images), -1).mean(1))


def fast_row(units, images: np.ndarray, reference_images: np.ndarray, reference: dict[str, np.ndarray],
             scores: dict[str, np.ndarray], metric, seconds: float) -> dict:
    """The full analysis' row (the metric's drops) with the proxy's score as dP."""
    row = drop_row(units, reference, scores, metric, seconds)
    grid = grid_distance(images, reference_images)
    per_prompt = reference[metric.primary] - scores[metric.primary] + GRID_WEIGHT * grid
    return {
        **row, "dP": float(per_prompt.mean()),
        "dP_std": float(per_prompt.std(ddof=1)) if len(per_prompt) > 1 else 0.0,
        "dP_metric": row["dP"], "proxy": PROXY,
        "per_prompt": [round(float(p), 6) for p in per_prompt], "grid": [round(float(d), 6) for d in grid],
    }


def profile_fast(pipe, config: FastProfileConfig, out_dir: str | Path, model_name: str = "",
                 progress: bool = True) -> list[dict]:
    """Run (or resume) the fast contribution analysis into `out_dir`; returns the table.

    One process: a variant costs `n_prompts` images, so sharding is not worth its start-up.
    """
    out = Path(out_dir)
    config = replace(config, steps=config.proxy_steps(default_steps(pipe)))  # recorded in the run's settings
    items = calibration_set(config)
    model = pipe.transformer
    metric = get_metric(config.metric, device=str(next(model.parameters()).device))  # bad weights fail first
    check_fits(pipe, config, metric)
    prepare_run(out, config, items, model, model_name, write=True)
    sampler = make_sampler(pipe, config.sampling(), items)
    repair_tail(out / TABLE)
    if not (out / "reference.npz").is_file():
        make_reference(out, sampler, metric, items, config.norm_mode)
    reference, norm_means = load_reference(out)
    with np.load(out / "reference.npz") as data:
        reference_images = data["images"]
    order = variants(model, config.scope, config.pairs, every_block=True)
    done = {row["variant"] for row in read_jsonl(out / TABLE)}
    todo = [v for v in order if variant_key(v) not in done]
    _run_variants(out, sampler, metric, todo, reference_images, reference, config.norm_mode, norm_means, progress)
    return finalize_table(out / TABLE, [variant_key(v) for v in order])


def _run_variants(out, sampler, metric, todo, reference_images, reference, norm_mode, norm_means, progress) -> None:
    from tqdm.auto import tqdm

    prompts = [it.prompt for batch in sampler.batches for it in batch]
    bar = tqdm(todo, desc="profile --fast", unit="variant", disable=not progress, dynamic_ncols=True)
    for units in bar:
        bar.set_postfix_str(variant_key(units))
        start = time.perf_counter()
        with without(sampler.transformer, list(units), norm_mode, norm_means):
            images = sampler.images()
        scores = check_scores(metric, metric.score(images, prompts), len(prompts))
        append_row(out / TABLE, fast_row(units, images, reference_images, reference, scores, metric,
                                         time.perf_counter() - start))
    bar.close()
