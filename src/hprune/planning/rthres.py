"""Choosing HPP's block/subcomponent switch point `r_thres` on the validation split.

The paper fixes r_thres by hand; on our teachers it decides much of what a
20% plan loses (results/ablation/<teacher>-rthres-<ratio>.json). Each
candidate's plan is scored on *val* by the caller's `loss_of_plan` (pruned
only, or after a short distillation) and the one that loses least is kept,
so the test split never takes part in the choice.
"""

from __future__ import annotations

from typing import Callable

from hprune.planning.scoring import plan_for_run

R_THRES_GRID = (0.25, 0.2, 0.15, 0.125, 0.1, 0.05, 0.01)


def sweep_r_thres(run, ratio: float, loss_of_plan: Callable, grid=R_THRES_GRID) -> list[dict]:
    """One row per candidate: the plan's units, size and validation loss (degradation).
    Candidates that give the same plan are scored once."""
    seen: dict[tuple, float] = {}
    rows = []
    for r_thres in grid:
        plan = plan_for_run(run, "hpp", ratio, r_thres=r_thres)
        key = tuple(str(u) for u in plan.units)
        if key not in seen:
            seen[key] = loss_of_plan(plan)
        rows.append({"r_thres": r_thres, "ratio_reached": plan.ratio_reached, "units": list(key),
                     "val_degradation": seen[key]})
    return rows


def best_r_thres(rows: list[dict]) -> float:
    """The least validation loss; on a tie the larger r_thres (closer to the paper's blocks-first plan)."""
    return min(rows, key=lambda r: (r["val_degradation"], -r["r_thres"]))["r_thres"]
