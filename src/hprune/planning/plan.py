"""Pruning plans: which units to remove, why, and for which model.

A plan is a versioned, human-readable JSON file (`"schema": 1`). Unit indices
always refer to the original (unpruned) model; `arch` records that model's
shape so a plan cannot be applied to another architecture or size. Rankers make
plans in hprune.planning.scoring; `Plan.for_model` makes one of units named by hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hprune.model import get_adapter
from hprune.model.units import NORM_MODES, Unit
from hprune.core.errors import HpruneError
from hprune.core.files import write_json

SCHEMA = 1
METHODS = ("manual", "hpp", "koala", "bkscore", "lastk")


def check_ratio(ratio: float, name: str = "ratio") -> float:
    if not 0.0 < float(ratio) < 1.0:
        raise HpruneError(f"{name} must be between 0 and 1 (exclusive), got {ratio}; e.g. 0.2 for a 20% reduction.")
    return float(ratio)


@dataclass
class Plan:
    family: str
    arch: dict
    units: list[Unit]
    method: str = "manual"
    norm_mode: str = "identity"
    ratio_target: float | None = None
    ratio_reached: float | None = None
    alpha: float | None = None
    r_thres: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    schema: int = SCHEMA

    def __post_init__(self):
        self.units = sorted({u if isinstance(u, Unit) else Unit.parse(u) for u in self.units})
        problems = []
        if self.method not in METHODS:
            problems.append(f"method '{self.method}' is not one of {METHODS}")
        if self.norm_mode not in NORM_MODES:
            problems.append(f"norm_mode '{self.norm_mode}' is not one of {NORM_MODES}")
        whole = {u for u in self.units if u.is_block}
        for u in self.units:
            if not u.is_block and u.block_unit() in whole:
                problems.append(f"{u} is listed although its whole block {u.block_unit()} is removed")
        if problems:
            raise HpruneError("invalid plan: " + "; ".join(problems) + ".")

    @classmethod
    def for_model(cls, model, units, **fields) -> "Plan":
        """A plan that removes `units` (`Unit`s or names such as `joint.12.attn`, in original
        indices) from `model`, checked against it: each must be one the model still has.
        `ratio_reached` is the share of the model's parameters they hold; `fields` set the rest."""
        adapter = get_adapter(model)
        units = [u if isinstance(u, Unit) else Unit.parse(u) for u in units]
        done = adapter.removed_units(model)
        gone = [str(u) for u in units if u in done or u.block_unit() in done]
        if gone:
            raise HpruneError(f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} already removed from this model "
                              "(indices name blocks of the original model); list only units it still has.")
        current = adapter.to_current(model, units)
        adapter.check_units(model, current)
        reached = sum(adapter.unit_params(model, u) for u in current) / adapter.total_params(model)
        return cls(family=adapter.family, arch=adapter.signature(model), units=units,
                   **{**fields, "ratio_reached": round(reached, 6)})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["units"] = [u.key for u in self.units]
        return {"schema": data.pop("schema"), **data}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_json(path, self.to_dict(), indent=2)
        return path

    @classmethod
    def from_dict(cls, data: dict, source: str = "plan") -> "Plan":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise HpruneError(f"{source} is not an hprune plan (schema {SCHEMA}); make one with `hprune plan` or `hprune prune --remove-blocks`.")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        missing = {"family", "arch", "units"} - known.keys()
        if missing:
            raise HpruneError(f"{source} lacks the keys {sorted(missing)}; make it again with `hprune plan`.")
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HpruneError(f"plan file {path} does not exist; check the path.") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HpruneError(f"plan file {path} is not valid JSON; make it again with `hprune plan`.") from None
        return cls.from_dict(data, source=f"plan file {path}")


def compose(plans: list[Plan]) -> list[Unit]:
    """Every unit the plans remove together (original indices): their union, less the
    subcomponents of blocks that one of them removes whole."""
    units = {u for plan in plans for u in plan.units}
    whole = {u for u in units if u.is_block}
    return sorted(u for u in units if u.is_block or u.block_unit() not in whole)
