"""`hprune profile --fast`: contribution analysis by how far a removal moves the teacher's own images.

The full analysis (hprune.analysis.profile) generates the whole calibration set again
for every variant (64 prompts, the teacher's 8 steps on the shapes testbed)
and scores it with the metric. The fast proxy generates a few prompts with a
short sampling loop (16 prompts, two per shapes category, 2 steps), once with
the full model and once per variant, same seeds, and scores a variant by how
far it moves the layout and colours of the full model's images: each image
averaged to a GRID x GRID grid of mean colours (8 x 8; 8-pixel cells at the
testbed's 64 px, 128-pixel cells at 1024 px), then

    d(v, p) = sqrt( mean over cells and channels of (grid_v - grid)^2 )      (colours in [0, 1])
    dP(v)   = mean over prompts p of d(v, p)

On the shapes teachers this ranks units like the full analysis better than the
RMS of raw pixels did (Spearman 0.842 / 0.834 against 0.817 / 0.772;
docs/analysis.md), chosen on calibration prompts against the full analysis.

No metric runs, so none needs weights. The whole rollout matters: a removal
that changes one prediction a little but steers the trajectory elsewhere
(a colour, a position) moves the image far; one prediction alone ranks units
much worse (docs/analysis.md, "`hprune profile --fast`").

The run directory is the full analysis' (config.json names the proxy;
`hprune plan` reads it unchanged): the reference images in `reference.npz`,
each variant one appended line of `contribution.jsonl`; a re-run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl
from hprune.analysis.profile import (
    TABLE, BlockSimilarity, CallRecorder, ProfileConfig, append_row, calibration_set, finalize_table, prepare_run,
    repair_tail, variant_key, variants, without, write_json,
)
from hprune.model.sampling import make_sampler
from hprune.prune.surgery import calibrate_norms

PROXY = "grid-rms"
GRID = 8  # cells per image side


@dataclass
class FastProfileConfig(ProfileConfig):
    """The full analysis' settings with the proxy's defaults: the first `n_prompts` of the
    balanced calibration set, `steps` sampling steps."""

    metric: str = PROXY
    n_prompts: int = 16
    steps: int | None = 2

    def __post_init__(self):
        if self.metric != PROXY:
            raise HpruneError(f"--fast scores by '{PROXY}'; drop --metric "
                              f"(or drop --fast to score with '{self.metric}').")
        super().__post_init__()

    def settings(self) -> dict:
        return {**super().settings(), "proxy": PROXY}


def grid_colours(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, GRID, GRID, 3] mean colours in [0, 1] (any H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    return torch.nn.functional.adaptive_avg_pool2d(x, GRID).permute(0, 2, 3, 1).numpy()


def make_reference(out: Path, sampler, norm_mode: str) -> None:
    """Generate the prompts with the full model once (KOALA's similarities on the way)."""
    model, start = sampler.transformer, time.perf_counter()
    similarity = BlockSimilarity(model)
    recorder = CallRecorder(model) if norm_mode == "mean" else None
    try:
        images = sampler.images()
    finally:
        sims = similarity.close()
        calls = recorder.close() if recorder else []
    if norm_mode == "mean":
        torch.save(calibrate_norms(model, calls), out / "norm_means.pt")
    np.savez_compressed(out / "reference.npz", images=images)
    write_json(out / "similarity.json", sims)
    write_json(out / "reference.json", {
        "metric": PROXY, "primary": PROXY, "alignment": PROXY, "values": {PROXY: 0.0},
        "n_prompts": len(images), "seconds": round(time.perf_counter() - start, 4),
    })


def fast_row(units, images: np.ndarray, reference: np.ndarray, seconds: float) -> dict:
    """The variant's distance to the reference images, in the full analysis' row format."""
    per_prompt = np.sqrt(((grid_colours(images) - grid_colours(reference)) ** 2).reshape(len(images), -1).mean(1))
    score = float(per_prompt.mean())
    return {
        "variant": variant_key(units), "units": [u.key for u in units], "dP": score,
        "dP_std": float(per_prompt.std(ddof=1)) if len(per_prompt) > 1 else 0.0, "n_prompts": len(per_prompt),
        "seconds": round(seconds, 4), "metric": PROXY, "values": {PROXY: score}, "drops": {PROXY: score},
        "per_prompt": [round(float(p), 6) for p in per_prompt],
    }


def profile_fast(pipe, config: FastProfileConfig, out_dir: str | Path, model_name: str = "",
                 progress: bool = True) -> list[dict]:
    """Run (or resume) the fast contribution analysis into `out_dir`; returns the table.

    One process: a variant costs `n_prompts * steps` image-forwards, so sharding is not worth its start-up.
    """
    out = Path(out_dir)
    items = calibration_set(config)
    model = pipe.transformer
    prepare_run(out, config, items, model, model_name, write=True)
    sampler = make_sampler(pipe, config.sampling(), items)
    repair_tail(out / TABLE)
    if not (out / "reference.npz").is_file():
        make_reference(out, sampler, config.norm_mode)
    with np.load(out / "reference.npz") as data:
        reference = data["images"]
    means = out / "norm_means.pt"
    norm_means = torch.load(means) if means.is_file() else None
    order = variants(model, config.scope, config.pairs, every_block=True)
    done = {row["variant"] for row in read_jsonl(out / TABLE)}
    todo = [v for v in order if variant_key(v) not in done]
    _run_variants(out, sampler, todo, reference, config.norm_mode, norm_means, progress)
    return finalize_table(out / TABLE, [variant_key(v) for v in order])


def _run_variants(out, sampler, todo, reference, norm_mode, norm_means, progress) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(todo, desc="profile --fast", unit="variant", disable=not progress, dynamic_ncols=True)
    for units in bar:
        bar.set_postfix_str(variant_key(units))
        start = time.perf_counter()
        with without(sampler.transformer, list(units), norm_mode, norm_means):
            images = sampler.images()
        append_row(out / TABLE, fast_row(units, images, reference, time.perf_counter() - start))
    bar.close()
