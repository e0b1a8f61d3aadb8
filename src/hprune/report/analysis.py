"""Figures and a page for one contribution analysis (paper Figures 4, 9-11).

- `contribution.png`: one heatmap row per subcomponent type (and the whole
  block) over block position, coloured by the drop, one panel per measure
  (dP and each metric component, e.g. semantic vs quality);
- `depth.png`: the whole-block drops of each component over depth, the
  direct test of "early blocks carry semantics, late blocks detail";
- `pairs.png`: per block, the drop of removing two subcomponents together
  (the diagonal: one alone);
- `index.html`: the figures, the top-k most prunable units per method and the
  agreement of the four methods' plans.
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hprune.model.units import BLOCK, JOINT_SUBS, SINGLE_SUBS, Unit
from hprune.core.errors import HpruneError
from hprune.planning.scoring import (
    RANKERS, PlanConfig, RunData, bkscore_scores, hpp_scores, koala_scores, lastk_scores, plan_for_run, ranked,
    resolved_alpha, single_unit_drops,
)

SUB_ORDER = (BLOCK, *JOINT_SUBS, *(s for s in SINGLE_SUBS if s not in JOINT_SUBS))


# ----------------------------------------------------------------- data


def block_labels(run: RunData) -> list[str]:
    """`j0 j1 ... s0 s1 ...`: short column labels in forward order."""
    return [f"{Unit.parse(k).kind[0]}{Unit.parse(k).index}" for k in run.units.blocks]


def measures(run: RunData) -> list[str]:
    """dP first, then the metric's components other than the primary."""
    primary = run.reference.get("primary")
    comps = list(run.rows[0]["drops"]) if run.rows else []
    return ["dP", *(c for c in comps if c != primary)]


def heatmap_grid(run: RunData, measure: str) -> tuple[list[str], np.ndarray]:
    """Rows: subcomponent types present; columns: blocks; NaN where not measured."""
    drops = single_unit_drops(run.rows, None if measure == "dP" else measure)
    position = {k: i for i, k in enumerate(run.units.blocks)}
    subs = [s for s in SUB_ORDER if any(Unit.parse(k).sub == s for k in drops)]
    grid = np.full((len(subs), len(position)), np.nan)
    for key, value in drops.items():
        unit = Unit.parse(key)
        grid[subs.index(unit.sub), position[unit.block_unit().key]] = value
    return subs, grid


def pair_matrices(run: RunData) -> dict[str, tuple[list[str], np.ndarray]]:
    """Block key -> (subs, matrix of dP): off-diagonal pairs, diagonal singles."""
    singles = single_unit_drops(run.rows)
    pairs = {tuple(r["units"]): r["dP"] for r in run.rows if len(r["units"]) == 2}
    out = {}
    for block in run.units.blocks:
        subs = sorted({Unit.parse(u).sub for p in pairs for u in p if Unit.parse(u).block_unit().key == block},
                      key=SUB_ORDER.index)
        if not subs:
            continue
        unit = Unit.parse(block)
        key = lambda s: Unit(unit.kind, unit.index, s).key
        m = np.full((len(subs), len(subs)), np.nan)
        for (i, a), (j, b) in itertools.product(enumerate(subs), repeat=2):
            m[i, j] = singles.get(key(a), np.nan) if i == j else pairs.get((key(a), key(b)), pairs.get((key(b), key(a)), np.nan))
        out[block] = (subs, m)
    return out


def method_rankings(run: RunData, alpha: float | None = None) -> dict[str, list[tuple[str, float]]]:
    """Most prunable first, per method; methods the run cannot serve are left out."""
    drops = single_unit_drops(run.rows)
    out = {}
    if drops:
        cfg = PlanConfig("hpp", 0.5, alpha=alpha)
        out["hpp"] = hpp_scores(drops, run.units, resolved_alpha(cfg, run.units))
        align = single_unit_drops(run.rows, run.alignment) if run.alignment in run.rows[0]["drops"] else {}
        if align:
            out["bkscore"] = bkscore_scores(align)
    if run.similarity:
        out["koala"] = koala_scores(run.similarity)
    out["lastk"] = lastk_scores(run.units)
    removable = {m: {k: v for k, v in out[m].items() if k in run.units.params} for m in out}
    return {m: [(k, removable[m][k]) for k in ranked(removable[m], run.units)] for m in RANKERS if m in out}


def plans_by_ratio(run: RunData, ratios: list[float], alpha: float | None = None) -> dict[float, dict[str, list[str]]]:
    out = {}
    for ratio in ratios:
        out[ratio] = {}
        for method in method_rankings(run, alpha):
            try:
                out[ratio][method] = [u.key for u in plan_for_run(run, method, ratio, alpha=alpha).units]
            except HpruneError:
                continue  # e.g. too few profiled units for this ratio
    return out


def agreement(plans: dict[str, list[str]]) -> dict[tuple[str, str], int]:
    """Units two methods' plans both remove (a block counts as itself only)."""
    return {(a, b): len(set(plans[a]) & set(plans[b])) for a, b in itertools.combinations(plans, 2)}


def shared_params(run: RunData, a: list[str], b: list[str]) -> float:
    """Fraction of A's removed parameters that B removes too (a subcomponent
    inside a block the other plan removes whole counts as shared)."""
    params = run.units.params

    def covered(key: str, other: set[str]) -> int:
        unit = Unit.parse(key)
        if key in other or unit.block_unit().key in other:
            return params[key]
        if unit.is_block:
            return sum(params[o] for o in other if Unit.parse(o).block_unit() == unit)
        return 0

    total = sum(params[k] for k in a)
    return sum(covered(k, set(b)) for k in a) / total if total else 0.0


# ----------------------------------------------------------------- figures


def _heat(ax, grid, rows, cols, title, fig):
    limit = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=90 if len(cols) > 24 else 0, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01)


def draw_contribution(run: RunData, path: Path) -> Path:
    panels = measures(run)
    cols = block_labels(run)
    fig = Figure(figsize=(max(6.0, 0.32 * len(cols) + 2), 1.0 + 2.0 * len(panels)), layout="constrained")
    for ax, measure in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        subs, grid = heatmap_grid(run, measure)
        label = "dP = P(ref) - P(removed)" if measure == "dP" else f"drop of {measure}"
        _heat(ax, grid, subs, cols, f"{label}  (red: removing it hurts)", fig)
    fig.suptitle(f"Contribution analysis: {run.units.family}, metric {run.reference.get('metric', '?')}", fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def draw_depth(run: RunData, path: Path) -> Path:
    """Whole-block drops over depth, each measure scaled by its reference value."""
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(run.units.blocks))
    ref = run.reference.get("values", {})
    for measure in measures(run):
        subs, grid = heatmap_grid(run, measure)
        name = run.reference.get("primary") if measure == "dP" else measure
        scale = abs(ref.get(name, 1.0)) or 1.0
        y = grid[subs.index(BLOCK)] / scale if BLOCK in subs else x * np.nan
        ax.plot(x, y, marker="o", ms=3, label=f"{measure} / reference")
    err = block_stderr(run) / (abs(ref.get(run.reference.get("primary"), 1.0)) or 1.0)
    ax.fill_between(x, -err, err, color="grey", alpha=0.2, lw=0, label="±1 s.e. of dP over prompts")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(x, block_labels(run), rotation=90 if len(x) > 24 else 0, fontsize=7)
    ax.set_xlabel("block (forward order)")
    ax.set_ylabel("relative drop (block removed)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def block_stderr(run: RunData) -> np.ndarray:
    """Standard error of each whole block's dP over prompts (NaN if not run)."""
    position = {k: i for i, k in enumerate(run.units.blocks)}
    err = np.full(len(position), np.nan)
    for r in run.rows:
        if len(r["units"]) == 1 and r["units"][0] in position and r["n_prompts"] > 0:
            err[position[r["units"][0]]] = r["dP_std"] / np.sqrt(r["n_prompts"])
    return err


def draw_pairs(run: RunData, path: Path) -> Path | None:
    mats = pair_matrices(run)
    if not mats:
        return None
    n = len(mats)
    cols = min(n, 6)
    rows = -(-n // cols)
    limit = max(np.nanmax(np.abs(m)) for _, m in mats.values()) or 1.0
    fig = Figure(figsize=(2.3 * cols, 2.3 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (block, (subs, m)) in zip(axes, mats.items()):
        image = ax.imshow(np.ma.masked_invalid(m), cmap="RdBu_r", vmin=-limit, vmax=limit)
        short = [s.replace("context_", "c_") for s in subs]
        ax.set_xticks(range(len(subs)), short, rotation=90, fontsize=6)
        ax.set_yticks(range(len(subs)), short, fontsize=6)
        ax.set_title(block.removesuffix(".block"), fontsize=8)
    for ax in axes[n:]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.tolist(), fraction=0.02)
    fig.suptitle("dP of removing two subcomponents of one block (diagonal: one alone)", fontsize=9)
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------- text and page


def top_k_text(rankings: dict[str, list[tuple[str, float]]], k: int) -> str:
    lines = [f"top {k} most prunable units per method (first = pruned first):"]
    for method, order in rankings.items():
        lines.append(f"  {method:8s} " + ", ".join(key.removesuffix(".block") for key, _ in order[:k]))
    return "\n".join(lines)


def agreement_text(run: RunData, plans: dict[float, dict[str, list[str]]]) -> str:
    lines = []
    for ratio, by_method in plans.items():
        lines.append(f"plans at {ratio:.0%}: units removed " +
                     ", ".join(f"{m} {len(u)}" for m, u in by_method.items()))
        for (a, b), n in agreement(by_method).items():
            lines.append(f"  {a} & {b}: {n} units in common, "
                         f"{shared_params(run, by_method[a], by_method[b]):.0%} of {a}'s removed parameters shared")
    return "\n".join(lines)


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_page(run: RunData, out: Path, figures: list[Path], rankings, plans, k: int) -> Path:
    ref = run.reference.get("values", {})
    top = [[m, ", ".join(key for key, _ in order[:k])] for m, order in rankings.items()]
    agree = [[f"{r:.0%}", f"{a} & {b}", n, f"{shared_params(run, p[a], p[b]):.0%}"]
             for r, p in plans.items() for (a, b), n in agreement(p).items()]
    singles = [[r["variant"], f"{r['dP']:+.4f}", f"{r['dP_std']:.4f}",
                *(f"{r['drops'][c]:+.4f}" for c in r["drops"]), r["seconds"]] for r in run.rows]
    comps = list(run.rows[0]["drops"]) if run.rows else []
    body = [
        f"<h1>Contribution analysis</h1><p>model family <b>{run.units.family}</b>, "
        f"metric <b>{html.escape(str(run.reference.get('metric')))}</b>, {run.reference.get('n_prompts')} prompts; "
        "reference " + ", ".join(f"{html.escape(c)} {v:.4f}" for c, v in ref.items()) + "</p>",
        *(f'<p><img src="{f.name}" style="max-width:100%"></p>' for f in figures),
        f"<h2>Top {k} most prunable units per method</h2>", _table(top, ["method", "units (pruned first)"]),
        "<h2>Agreement of the four plans</h2>", _table(agree, ["ratio", "methods", "units in common", "shared parameters"]),
        "<h2>All variants</h2>", _table(singles, ["variant", "dP", "dP std", *(f"drop {c}" for c in comps), "seconds"]),
    ]
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:12px}" \
            "td,th{border:1px solid #ccc;padding:2px 6px}"
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>hprune analysis</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return page


def report_analysis(run: RunData, out: Path, k: int = 10, ratios=(0.2, 0.3), alpha: float | None = None) -> str:
    """Draw the figures and the page into `out`; returns the text summary."""
    if not run.rows:
        raise HpruneError(f"{run.path} has no contribution rows yet; run or resume `hprune profile` first.")
    out.mkdir(parents=True, exist_ok=True)
    figures = [draw_contribution(run, out / "contribution.png"), draw_depth(run, out / "depth.png")]
    pairs = draw_pairs(run, out / "pairs.png")
    figures += [pairs] if pairs else []
    rankings = method_rankings(run, alpha)
    plans = plans_by_ratio(run, list(ratios), alpha)
    page = write_page(run, out, figures, rankings, plans, k)
    return "\n".join([top_k_text(rankings, k), agreement_text(run, plans), f"wrote {page}"])
