"""Study: can `hprune profile --fast` reach the full analysis' ranking with the real metric? (issue 19, item 3)

The fast proxy before this study (8 x 8 grid colour RMS against the full model's own 2-step images, 16
prompts) reaches Spearman 0.842 / 0.834 against the full analysis (results/analysis/<teacher>,
64 calibration prompts, 8 steps, ShapesEval); the target is >= 0.9 on both shapes teachers at
<= 1/10 of the full analysis' transformer image-forwards (full: 64 prompts x 8 steps per variant
and for the reference; here a budget of 51.2 prompt-steps per variant, the reference counted too).

This study generates, per teacher and per sampling config (prompts x steps), the reference and
every single-unit variant once (the first prompts of the calibration set, val split only, same
seeds as the full analysis, through hprune's own sampler and `without`), caches the images under
/tmp/profile_fast_study/<teacher>/<config>/ (a re-run resumes), then scores them several ways:

- ShapesEval dP (score, and its semantic / quality parts) on the first m prompts of a config;
- the grid distance of the grid-rms proxy (8 x 8 mean colours, RMS, mean over prompts);
- hybrids: metric dP plus the grid distance with a fixed weight c (`shapes+<c>grid`), or rescaled
  to dP's spread by the proxy's own numbers, never by the full table (`shapes+<w>*grid`), or the
  mean of both ranks; from the same images, or from two configs that fit the budget together:
  the metric here, the 2-step grid of the grid-rms proxy's run (16 prompts x 2 steps, per-prompt
  distances; runs/profile_fast-grid-rms/<teacher>, kept aside from runs/profile_fast when --fast
  changed) on its first 8-16 prompts.

Each proxy is compared with the full analysis like scripts/profile_fast_agreement.py does (Spearman
over all single units, blocks only, subcomponents only; HPP plans at 20% / 30% by plan_for_run).

    # generate (one process per teacher, 1 torch thread each), then score everything
    python scripts/profile_fast_study.py generate shapes-sd3 --configs 8x8 8x6 12x4 &
    python scripts/profile_fast_study.py generate shapes-flux --configs 8x8 8x6 12x4 &
    wait; python scripts/profile_fast_study.py analyze

Result (2026-11-30, 2 shared CPU cores, 1 torch thread a process): the metric alone is too noisy on
so few prompts (8 x 6: 0.82 / 0.89; 6 x 8: 0.75 / 0.89) and the grid alone stops near 0.84-0.90;
their sum with a fixed weight, dP + 5 * grid on 8 prompts (one per shapes category) at 6 steps,
reaches 0.928 / 0.917 at 48/512 = 0.094 of the full analysis' forwards (weights 3-6: >= 0.91 on
both); 4 steps are too few for ShapesEval (12 x 4: 0.84 / 0.92). It became `hprune profile --fast`
(proxy `metric+5grid`). Whole blocks stay the weak part (Spearman 0.69 / 0.68) and the HPP plans
still differ from the full analysis' (as the full analysis' own do between re-runs).

Prints and writes results/profile_fast_study.json. A study, not product code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from hprune.analysis.profile import ProfileConfig, calibration_set, variant_key, variants, without  # noqa: E402
from hprune.analysis.profile_fast import FastProfileConfig, grid_colours  # noqa: E402
from hprune.core.errors import HpruneError  # noqa: E402
from hprune.core.files import write_json  # noqa: E402
from hprune.model.sampling import make_sampler  # noqa: E402
from hprune.planning.scoring import load_run, plan_for_run, single_unit_drops  # noqa: E402
from profile_fast_agreement import RATIOS, spearman  # noqa: E402

CACHE = Path("/tmp/profile_fast_study")
TEACHERS = ("shapes-sd3", "shapes-flux")
FULL = (64, 8)  # prompts, steps of the full analysis
BUDGET = FULL[0] * FULL[1] / 10  # prompt-steps per variant (the reference counted like a variant)
WEIGHTS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0)  # grid weight in the hybrids, after rescaling the grid to dP's spread
DETAILS = ["grid 16x2 (grid-rms, the old --fast)", "shapes 8x6", "grid 8x6", "shapes 6x8", "grid 6x8", "shapes+5grid 6x8"]
TARGET = 0.9  # Spearman against the full analysis, every teacher
FIXED = (3, 4, 5, 6, 8, 10, 12)  # the same without rescaling: dP + c * grid distance (colours in [0, 1])


def parse_config(text: str) -> tuple[int, int]:
    prompts, steps = text.lower().split("x")
    return int(prompts), int(steps)


# ----------------------------------------------------------------- generation (cached)


def generate(teacher: str, configs: list[str]) -> None:
    from hprune.folders import load_pipeline

    pipe = load_pipeline(teacher, torch_dtype=torch.float32, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    model = pipe.transformer
    order = variants(model, "all", False, every_block=True)
    for text in configs:
        n, steps = parse_config(text)
        config = FastProfileConfig(n_prompts=n, steps=steps)  # the proxy's prompts: the first n of the calibration set
        items = calibration_set(config)
        sampler = make_sampler(pipe, config.sampling(), items)
        folder = CACHE / teacher / text
        folder.mkdir(parents=True, exist_ok=True)
        for units in [None, *order]:
            key = "reference" if units is None else variant_key(units)
            path = folder / f"{key}.npz"
            if path.is_file():
                continue
            start = time.perf_counter()
            if units is None:
                images = sampler.images()
            else:
                with without(model, list(units), config.norm_mode):
                    images = sampler.images()
            seconds = time.perf_counter() - start
            tmp = folder / f".{key}.tmp.npz"
            np.savez_compressed(tmp, images=images, seconds=seconds)
            tmp.rename(path)
            print(f"{teacher} {text} {key} {seconds:.1f}s", flush=True)


# ----------------------------------------------------------------- scoring (cached)


def scores(teacher: str, text: str) -> dict[str, dict]:
    """variant -> per-image ShapesEval components, grid colours and generation seconds."""
    from hprune.metrics import get_metric

    folder = CACHE / teacher / text
    cache = folder / "scores.npz"
    files = sorted(p for p in folder.glob("*.npz") if p.name != "scores.npz" and not p.name.startswith("."))
    if cache.is_file():
        with np.load(cache, allow_pickle=True) as data:
            done = data["table"].item()
        if len(done) == len(files):
            return done
    metric = get_metric("shapes")
    n, _ = parse_config(text)
    prompts = [it.prompt for it in calibration_set(ProfileConfig(n_prompts=n))]
    table = {}
    for path in files:
        with np.load(path) as data:
            images, seconds = data["images"], float(data["seconds"])
        s = metric.score(images, prompts)  # < 32 images: no set-level frechet term, so each image scores alone
        table[path.stem] = {**{k: np.asarray(v, dtype=float) for k, v in s.items()},
                            "grid": grid_colours(images), "seconds": seconds}
    np.savez(cache, table=np.array(table, dtype=object))
    return table


def per_prompt(table: dict, key: str, m: int) -> dict[str, np.ndarray]:
    """Per prompt (first m): metric drops and grid distance of variant `key` against the reference."""
    ref, var = table["reference"], table[key]
    d = np.sqrt(((var["grid"][:m] - ref["grid"][:m]) ** 2).reshape(m, -1).mean(1))
    return {"score": ref["score"][:m] - var["score"][:m], "semantic": ref["semantic"][:m] - var["semantic"][:m],
            "quality": ref["quality"][:m] - var["quality"][:m], "grid": d}


def fast_run_grid(teacher: str) -> dict[str, np.ndarray]:
    """The grid-rms proxy's run (16 prompts x 2 steps): per-prompt grid distances."""
    for folder in ("runs/profile_fast-grid-rms", "runs/profile_fast"):  # kept aside once --fast changed
        path = ROOT / folder / teacher / "contribution.jsonl"
        config = path.parent / "config.json"
        if path.is_file() and json.loads(config.read_text())["settings"].get("proxy") == "grid-rms":
            break
    else:
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["variant"]: np.asarray(r["per_prompt"]) for r in rows if len(r["units"]) == 1}


# ----------------------------------------------------------------- agreement


def agreement(full, proxy: dict[str, float]) -> dict:
    a = single_unit_drops(full.rows)
    keys = sorted(set(a) & set(proxy))
    blocks = [k for k in keys if k.endswith(".block")]
    subs = [k for k in keys if k not in blocks]
    rho = lambda ks: round(spearman([a[k] for k in ks], [proxy[k] for k in ks]), 4)
    out = {"units": len(keys), "spearman": rho(keys), "spearman_blocks": rho(blocks), "spearman_subcomponents": rho(subs),
           "plans": {}}
    rows = [r for r in full.rows if len(r["units"]) == 1 and r["units"][0] in proxy]
    other = dataclasses.replace(full, rows=[{**r, "dP": float(proxy[r["units"][0]])} for r in rows])
    for ratio in RATIOS:
        try:
            p_full, p_fast = ({u.key for u in plan_for_run(run, "hpp", ratio).units} for run in (full, other))
        except HpruneError as err:  # a partial cache: too few units for the ratio
            out["plans"][str(ratio)] = {"identical": None, "in_one_only": None, "error": str(err)}
            continue
        out["plans"][str(ratio)] = {"identical": p_full == p_fast, "units_full": len(p_full),
                                    "units_fast": len(p_fast), "in_one_only": len(p_full ^ p_fast),
                                    "only_full": sorted(p_full - p_fast), "only_fast": sorted(p_fast - p_full)}
    return out


def candidates(teacher: str, configs: list[str]) -> dict[str, dict]:
    """Proxy name -> {"cost": prompt-steps per variant, "score": {unit: value}}."""
    tables = {text: scores(teacher, text) for text in configs if (CACHE / teacher / text / "reference.npz").is_file()}
    fast = fast_run_grid(teacher)
    keys = sorted(set.intersection(*[set(t) - {"reference"} for t in tables.values()])) if tables else []
    out = {}

    def add(name, cost, values):  # over the budget too, for comparison (flagged, never chosen)
        out[name] = {"cost": cost, "score": values}

    # one config: metric on its first m prompts, the grid on the same images, and their weighted sums
    for text, table in tables.items():
        n, steps = parse_config(text)
        for m in sorted({m for m in (2, 3, 4, 5, 6, 8, 12, 16) if m <= n} | {n}):
            pp = {k: per_prompt(table, k, m) for k in keys}
            cost = m * steps
            metric = {k: float(v["score"].mean()) for k, v in pp.items()}
            grid = {k: float(v["grid"].mean()) for k, v in pp.items()}
            add(f"shapes {m}x{steps}", cost, metric)
            add(f"shapes-quality {m}x{steps}", cost, {k: float(v["quality"].mean()) for k, v in pp.items()})
            add(f"shapes-semantic {m}x{steps}", cost, {k: float(v["semantic"].mean()) for k, v in pp.items()})
            add(f"grid {m}x{steps}", cost, grid)
            for w in WEIGHTS:
                add(f"shapes+{w}*grid {m}x{steps}", cost, hybrid(metric, grid, w))
            add(f"rankmean(shapes,grid) {m}x{steps}", cost, rank_mean(metric, grid))
            for c in FIXED:  # a fixed weight: each row scored alone (no rescaling over the run)
                add(f"shapes+{c}grid {m}x{steps}", cost, {k: metric[k] + c * grid[k] for k in keys})
        # two configs that fit together: the metric here, the 2-step grid of today's proxy on fewer prompts
        if fast:
            for m in sorted({m for m in (2, 3, 4, 5, 6) if m <= n}):
                for g in (8, 12, 16):
                    cost = m * steps + g * 2
                    if cost > BUDGET:
                        continue
                    metric = {k: float(per_prompt(table, k, m)["score"].mean()) for k in keys}
                    grid = {k: float(fast[k][:g].mean()) for k in keys if k in fast}
                    for w in WEIGHTS:
                        add(f"shapes {m}x{steps} + {w}*grid {g}x2", cost, hybrid(metric, grid, w))
                    add(f"rankmean(shapes {m}x{steps}, grid {g}x2)", cost, rank_mean(metric, grid))
    if fast:
        add("grid 16x2 (grid-rms, the old --fast)", 32, {k: float(v.mean()) for k, v in fast.items()})
    return out


def hybrid(metric: dict, grid: dict, w: float) -> dict:
    """dP + w * grid rescaled to dP's spread (both from the proxy's own numbers: mean absolute values)."""
    keys = [k for k in metric if k in grid]
    scale = np.mean([abs(metric[k]) for k in keys]) / max(np.mean([grid[k] for k in keys]), 1e-12)
    return {k: metric[k] + w * scale * grid[k] for k in keys}


def rank_mean(metric: dict, grid: dict) -> dict:
    from profile_fast_agreement import _ranks

    keys = [k for k in metric if k in grid]
    r1, r2 = _ranks(np.array([metric[k] for k in keys])), _ranks(np.array([grid[k] for k in keys]))
    # on dP's scale for the plan: the metric's values re-ordered by the mean rank
    values = np.sort([metric[k] for k in keys])
    order = np.argsort((r1 + r2) / 2, kind="mergesort")
    return {keys[i]: float(values[j]) for j, i in enumerate(order)}


def analyze(teachers: list[str], configs: list[str], out_path: Path) -> dict:
    per_teacher = {}
    for teacher in teachers:
        full = load_run(ROOT / "results/analysis" / teacher)
        cands = candidates(teacher, configs)
        per_teacher[teacher] = {name: {"prompt_steps_per_variant": c["cost"], "forward_fraction": round(c["cost"] / (FULL[0] * FULL[1]), 4),
                                       **agreement(full, c["score"])} for name, c in cands.items()}
        per_teacher[teacher]["_wall"] = {text: wall(teacher, text) for text in configs
                                         if (CACHE / teacher / text / "reference.npz").is_file()}
    names = sorted(set.intersection(*[set(v) - {"_wall"} for v in per_teacher.values()]))
    within = [n for n in names if per_teacher[teachers[0]][n]["prompt_steps_per_variant"] <= BUDGET + 1e-9]
    def key(n):  # those at the target (>= 0.9 on every teacher) first, then by the mean, then the worse teacher
        rhos = [per_teacher[t][n]["spearman"] for t in teachers]
        return -(min(rhos) >= TARGET), -float(np.mean(rhos)), -min(rhos)

    ranked = sorted(within, key=key) + sorted(set(names) - set(within), key=key)
    summary = []
    for name in ranked:
        row = {"proxy": name, "forward_fraction": per_teacher[teachers[0]][name]["forward_fraction"],
               "within_budget": name in within}
        for t in teachers:
            r = per_teacher[t][name]
            row[t] = {"all": r["spearman"], "blocks": r["spearman_blocks"], "subs": r["spearman_subcomponents"],
                      "plan20": r["plans"]["0.2"]["identical"], "plan30": r["plans"]["0.3"]["identical"],
                      "plan20_in_one_only": r["plans"]["0.2"]["in_one_only"],
                      "plan30_in_one_only": r["plans"]["0.3"]["in_one_only"]}
        summary.append(row)
    result = {"command": " ".join(["python", *sys.argv]), "budget_prompt_steps_per_variant": BUDGET,
              "full": {"prompts": FULL[0], "steps": FULL[1]}, "configs": configs,
              "chosen": summary[0]["proxy"] if summary and summary[0]["within_budget"] else None,
              "chosen_by": "within the budget and at the target on every teacher, the highest mean Spearman",
              "ranked": summary,
              # plans unit by unit for the chosen proxy and the baselines only (every proxy's counts are in `ranked`)
              "details": {t: {n: per_teacher[t][n] for n in DETAILS + [summary[0]["proxy"]] if n in per_teacher[t]}
                          for t in teachers},
              "generation_wall": {t: per_teacher[t]["_wall"] for t in teachers}}
    for row in summary:
        print(f"{'' if row['within_budget'] else 'OVER '}{row['proxy']:42s} {row['forward_fraction']:.3f} " + "  ".join(
            f"{t}: {row[t]['all']:.3f} (b {row[t]['blocks']:.2f} s {row[t]['subs']:.2f} plans {row[t]['plan20_in_one_only']}/{row[t]['plan30_in_one_only']})"
            for t in teachers))
    write_json(out_path, result)
    return result


def wall(teacher: str, text: str) -> dict:
    folder = CACHE / teacher / text
    secs = []
    for p in folder.glob("*.npz"):
        if p.name == "scores.npz" or p.name.startswith("."):
            continue
        with np.load(p) as data:
            secs.append(float(data["seconds"]))
    return {"files": len(secs), "generate_s_total": round(sum(secs), 1), "generate_s_mean": round(float(np.mean(secs)), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("teacher", choices=TEACHERS)
    g.add_argument("--configs", nargs="+", default=["8x8", "8x6", "12x4"])
    a = sub.add_parser("analyze")
    a.add_argument("--teachers", nargs="+", default=list(TEACHERS))
    a.add_argument("--configs", nargs="+", default=["8x8", "8x6", "12x4"])
    a.add_argument("--out", default=str(ROOT / "results/profile_fast_study.json"))
    for p in (g, a):
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cmd == "generate":
        generate(args.teacher, args.configs)
    else:
        analyze(args.teachers, args.configs, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
