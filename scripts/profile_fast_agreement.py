"""Does `hprune profile --fast` rank units like the full analysis, and at what cost? (issue 19, item 3)

For each shapes teacher: run (or resume) the fast analysis into runs/profile_fast/<teacher>,
compare it with the committed full analysis (results/analysis/<teacher>, 64 calibration
prompts, 8 steps, ShapesEval; made on an H100):

- Spearman rank correlation of the proxy's score with the full analysis' dP over every unit;
- the HPP plans at 20% and 30% (same alpha and r_thres), unit for unit;
- cost: transformer image-forwards (exact, both) and wall time on this CPU in one process
  (the fast run measured whole; the full run as its reference plus one variant per unit, with
  one variant generated and scored here and multiplied: the whole run takes hours on 2 cores);
- the same counts projected to the paper's SD3.5 Large analysis.

    # as measured (~35 min on 2 shared CPU cores): one process per teacher, then both again,
    # which resumes the finished runs and reuses their timings
    python scripts/profile_fast_agreement.py --teachers shapes-sd3 --threads 1 --out /tmp/sd3.json &
    python scripts/profile_fast_agreement.py --teachers shapes-flux --threads 1 --out /tmp/flux.json &
    wait; python scripts/profile_fast_agreement.py --threads 1

Uses calibration (val) prompts only. Prints and writes results/profile_fast.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hprune.core.files import write_json
from hprune.analysis.profile import ProfileConfig, calibration_set, variants
from hprune.analysis.profile_fast import FAST_STEPS, FastProfileConfig, profile_fast
from hprune.model.sampling import make_sampler
from hprune.planning.scoring import load_run, plan_for_run, single_unit_drops

ROOT = Path(__file__).resolve().parent.parent
RATIOS = (0.2, 0.3)
# The paper's analysis of SD3.5 Large (Turbo): 38 blocks x 400 images, 38 x 5 subcomponents x 80 images, 4 steps.
PAPER = {"blocks": 38, "subs_per_block": 5, "block_images": 400, "sub_images": 80, "steps": 4}


def spearman(a: list[float], b: list[float]) -> float:
    """Pearson correlation of average ranks (ties share their mean rank)."""
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        ranks[x == value] = ranks[x == value].mean()
    return ranks


def agreement(full_dir: Path, fast_dir: Path) -> dict:
    full, fast = load_run(full_dir), load_run(fast_dir)
    a, b = single_unit_drops(full.rows), single_unit_drops(fast.rows)
    keys = sorted(set(a) & set(b))
    blocks = [k for k in keys if k.endswith(".block")]
    out = {"units": len(keys), "spearman": round(spearman([a[k] for k in keys], [b[k] for k in keys]), 4),
           "spearman_blocks": round(spearman([a[k] for k in blocks], [b[k] for k in blocks]), 4),
           "spearman_subcomponents": round(spearman([a[k] for k in keys if k not in blocks],
                                                    [b[k] for k in keys if k not in blocks]), 4), "plans": {}}
    for ratio in RATIOS:
        p_full, p_fast = ({u.key for u in plan_for_run(run, "hpp", ratio).units} for run in (full, fast))
        out["plans"][str(ratio)] = {"identical": p_full == p_fast, "units_full": len(p_full),
                                    "only_full": sorted(p_full - p_fast), "only_fast": sorted(p_fast - p_full)}
    return out


def self_agreement(full_dir: Path, draws: int = 200, seed: int = 0) -> dict:
    """How well would the full analysis agree with a re-run of itself on fresh prompts? Each draw
    perturbs every dP by N(0, 2 s.e.^2) (two independent runs differ by twice the variance; s.e. =
    dP_std / sqrt(n_prompts)) and is compared with the committed table like the proxy is."""
    import dataclasses

    run, rng = load_run(full_dir), np.random.default_rng(seed)
    rows = [r for r in run.rows if len(r["units"]) == 1]
    dp = np.array([r["dP"] for r in rows])
    se = np.array([r["dP_std"] / np.sqrt(r["n_prompts"]) for r in rows]) * np.sqrt(2)
    plans = {r: {u.key for u in plan_for_run(run, "hpp", r).units} for r in RATIOS}
    rhos, same = [], {r: 0 for r in RATIOS}
    for _ in range(draws):
        noisy = dp + rng.normal(size=len(dp)) * se
        rhos.append(spearman(dp, noisy))
        other = dataclasses.replace(run, rows=[{**row, "dP": float(v)} for row, v in zip(rows, noisy)])
        for r in RATIOS:
            same[r] += {u.key for u in plan_for_run(other, "hpp", r).units} == plans[r]
    return {"draws": draws, "spearman_mean": round(float(np.mean(rhos)), 4),
            "spearman_p10": round(float(np.percentile(rhos, 10)), 4),
            "plan_identical_fraction": {str(r): round(same[r] / draws, 3) for r in RATIOS}}


def forwards(n_variants: int, prompts: int, steps: int, cfg: int) -> dict:
    """Image-forwards of the transformer: the reference once, then each variant."""
    each = prompts * steps * cfg
    return {"reference": each, "per_variant": each, "total": (n_variants + 1) * each}


def time_full_variant(pipe, teacher: str, cache: Path) -> dict:
    """Wall time of one full variant (generate the 64-prompt calibration set with joint.0's
    block removed, score it with ShapesEval), measured once and cached."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from hprune.metrics import get_metric
    from hprune.prune.surgery import removed

    config = ProfileConfig()
    items = calibration_set(config)
    sampler, metric = make_sampler(pipe, config.sampling(), items), get_metric("shapes", device="cpu")
    unit = variants(pipe.transformer)[0]
    start = time.perf_counter()
    with removed(pipe.transformer, list(unit), config.norm_mode):
        images = sampler.images()
    generate = time.perf_counter() - start
    metric.score(images, [it.prompt for it in items])
    data = {"variant": unit[0].key, "seconds": round(time.perf_counter() - start, 2), "generate_s": round(generate, 2)}
    write_json(cache, data)
    return data


def measure(teacher: str, runs: Path, n_prompts: int, steps: int) -> dict:
    from hprune.folders import load_pipeline

    pipe = load_pipeline(teacher, torch_dtype=torch.float32, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    run_dir = runs / teacher
    config = FastProfileConfig(n_prompts=n_prompts, steps=steps)
    start = time.perf_counter()
    rows = profile_fast(pipe, config, run_dir, model_name=teacher, progress=False)
    fast_wall = time.perf_counter() - start
    timing_file = run_dir / "timing.json"  # wall time of the first complete run (a resumed call is shorter)
    if not timing_file.is_file():
        write_json(timing_file, {"wall_s": round(fast_wall, 2)})
    reference = json.loads((run_dir / "reference.json").read_text())
    fast_s = json.loads(timing_file.read_text())["wall_s"]
    full_variant = time_full_variant(pipe, teacher, run_dir / "full_variant_timing.json")
    cfg, n = 2 if pipe.config.guidance_scale != 1.0 else 1, len(rows)
    full_fw, fast_fw = forwards(n, 64, 8, cfg), forwards(n, n_prompts, steps, cfg)
    full_s = (n + 1) * full_variant["generate_s"] + n * (full_variant["seconds"] - full_variant["generate_s"])
    return {
        "teacher": teacher, "variants": n, "proxy": config.settings()["proxy"], "n_prompts": n_prompts,
        "steps": steps, "reference_s": reference["seconds"],
        "agreement": agreement(ROOT / "results/analysis" / teacher, run_dir),
        "full_vs_its_own_rerun": self_agreement(ROOT / "results/analysis" / teacher),
        "cost": {
            "forwards_full": full_fw, "forwards_fast": fast_fw,
            "forward_ratio": round(fast_fw["total"] / full_fw["total"], 4),
            "wall_fast_s": fast_s, "wall_full_variant_s": full_variant["seconds"],
            "wall_full_s_estimated": round(full_s, 1), "wall_ratio": round(fast_s / full_s, 4),
        },
    }


def paper_projection(n_prompts: int, steps: int) -> dict:
    """Image-forwards of the paper's SD3.5 Large analysis (4 steps, no CFG) and of --fast on it
    (`steps` of the 4, `n_prompts` images per variant); the full run also decodes and scores
    every image, so the ratio of forwards understates the saving."""
    p = PAPER
    subs = p["blocks"] * p["subs_per_block"]
    full = p["steps"] * (p["blocks"] * p["block_images"] + subs * p["sub_images"])
    fast = (p["blocks"] + subs + 1) * n_prompts * steps
    return {"variants": p["blocks"] + subs, "forwards_full": full, "forwards_fast": fast,
            "forward_ratio": round(fast / full, 4), "paper_gpu_hours_full": 12.6,
            "projected_gpu_hours_fast_at_paper_speed": round(12.6 * fast / full, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", nargs="+", default=["shapes-sd3", "shapes-flux"])
    parser.add_argument("--runs", default=str(ROOT / "runs/profile_fast"), help="fast run directories (resumable)")
    parser.add_argument("--n-prompts", type=int, default=FastProfileConfig.n_prompts)
    parser.add_argument("--steps", type=int, default=FAST_STEPS)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default=str(ROOT / "results/profile_fast.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"command": " ".join(["python", *sys.argv]), "device": "CPU, 2 shared cores",
              "plans_by": "hprune.planning.scoring.plan_for_run, hpp, the paper's alpha, default r_thres",
              "torch_threads": torch.get_num_threads(),
              "teachers": [measure(t, Path(args.runs), args.n_prompts, args.steps) for t in args.teachers],
              "paper_sd35_large": paper_projection(args.n_prompts, args.steps)}
    print(json.dumps(result, indent=1))
    write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
