"""Block plans for the benchmark: the authors' SD3.5 Large plan, late-block plans, plan files.

Published plans: the authors' code removes whole blocks 25, 26, 27, 28, 31,
32, 33, 34 of SD3.5 Large (Turbo), 8 of 38 (21% of the transformer's
parameters): that is our "20%" plan for SD3.5 Large. No other block list is
published, so the remaining plans remove *late* blocks until the ratio is
reached: from each block list (FLUX: double- and single-stream) the same share
of its last removable blocks. Those are speed/memory stand-ins, not quality plans.
"""

from __future__ import annotations

from pathlib import Path

from hprune.model import get_adapter
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.planning.plan import Plan, check_ratio

AUTHORS_SD35_LARGE = [Unit("joint", i) for i in (25, 26, 27, 28, 31, 32, 33, 34)]


def published_plan(arch_name: str, model, ratio: float) -> Plan:
    """The plan `hprune bench --ratio` uses: the authors' list where one exists for 20%."""
    ad = get_adapter(model)
    if arch_name == "sd3.5-large" and abs(ratio - 0.2) < 1e-9:
        units = AUTHORS_SD35_LARGE
        return Plan.for_model(model, units, method="manual", ratio_target=ratio, ratio_reached=_reached(ad, model, units))
    return late_blocks_plan(model, ratio)


def late_blocks_plan(model, ratio: float) -> Plan:
    """Remove the same share of late blocks from each block list until `ratio` of the parameters is gone."""
    ratio = check_ratio(ratio)
    ad = get_adapter(model)
    lists = _removable_by_kind(ad, model)
    total = ad.total_params(model)
    for step in range(1, 1001):
        share = step / 1000
        units = [u for kind in lists.values() for u in kind[len(kind) - round(share * len(kind)):]] if share else []
        if _reached(ad, model, units) >= ratio:
            return Plan.for_model(model, units, method="lastk", ratio_target=ratio, ratio_reached=_reached(ad, model, units))
    raise HpruneError(f"removing every removable block does not reach ratio {ratio} of {total} parameters; ask for less.")


def remove_last_plan(model, k: int) -> Plan:
    """The last k removable blocks in forward order."""
    ad = get_adapter(model)
    order = [u for kind in _removable_by_kind(ad, model).values() for u in kind]
    if not 0 < k <= len(order):
        raise HpruneError(f"--remove-last must be between 1 and {len(order)} (removable blocks of this model), got {k}.")
    units = order[-k:]
    return Plan.for_model(model, units, method="lastk", ratio_reached=_reached(ad, model, units))


def plan_from_file(path: str | Path, model) -> Plan:
    plan = Plan.load(path)
    ad = get_adapter(model)
    if plan.arch != ad.signature(model):
        raise HpruneError(f"plan file {path} was made for another architecture ({plan.arch.get('class')}, {plan.arch}); pick the matching --arch.")
    return plan


def _removable_by_kind(ad, model) -> dict[str, list[Unit]]:
    out: dict[str, list[Unit]] = {}
    for unit, _ in ad.blocks(model):
        if ad.block_removable(model, unit):
            out.setdefault(unit.kind, []).append(unit)
    return out


def _reached(ad, model, units) -> float:
    blocks = dict(ad.blocks(model))
    removed = sum(p.numel() for u in units for p in blocks[u].parameters())
    return removed / ad.total_params(model)
