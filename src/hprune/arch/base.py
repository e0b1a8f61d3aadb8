"""What every model-family adapter provides.

An adapter knows one diffusers transformer class: where its blocks live, what
its removable units are, how many parameters each holds, and which submodule
to swap to remove a unit. Surgery (hprune.surgery) uses only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from hprune.arch.units import Unit
from hprune.errors import HpruneError


@dataclass(frozen=True)
class UnitInfo:
    unit: Unit
    params: int


def count_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class Adapter:
    """Base class; subclasses fill the family-specific parts."""

    family: str = ""
    model_class: str = ""
    # block kind -> attribute name of the nn.ModuleList on the model
    block_lists: dict[str, str] = {}

    def block_list(self, model: nn.Module, kind: str) -> nn.ModuleList:
        return getattr(model, self.block_lists[kind])

    def blocks(self, model: nn.Module) -> list[tuple[Unit, nn.Module]]:
        return [(Unit(kind, i), blk) for kind in self.block_lists for i, blk in enumerate(self.block_list(model, kind))]

    def total_params(self, model: nn.Module) -> int:
        return count_params(model)

    def subcomponents(self, model: nn.Module, kind: str, index: int) -> tuple[str, ...]:
        raise NotImplementedError

    def unit_params(self, model: nn.Module, unit: Unit) -> int:
        raise NotImplementedError

    def part_modules(self, block: nn.Module, kind: str) -> dict[str, nn.Module]:
        """Subcomponent -> the module of `block` holding its weights (a removed one holds none)."""
        raise NotImplementedError

    def units(self, model: nn.Module) -> list[UnitInfo]:
        out = []
        for block_unit, _ in self.blocks(model):
            subs = self.subcomponents(model, block_unit.kind, block_unit.index)
            for sub in ("block", *subs) if self.block_removable(model, block_unit) else subs:
                unit = Unit(block_unit.kind, block_unit.index, sub)
                out.append(UnitInfo(unit, self.unit_params(model, unit)))
        return out

    def block_removable(self, model: nn.Module, unit: Unit) -> bool:
        return True

    def signature(self, model: nn.Module) -> dict:
        raise NotImplementedError

    def norm_linear(self, model: nn.Module, unit: Unit) -> nn.Linear:
        """The AdaLN projection that removing norm `unit` makes constant."""
        raise NotImplementedError

    def swaps(self, model: nn.Module, kind: str, index: int, subs: set[str], consts: dict, physical: bool) -> list:
        """The module swaps that remove subcomponents `subs` of one block.
        `consts` maps each removed norm sub to its constant modulation."""
        raise NotImplementedError

    def delete_blocks(self, model: nn.Module, units) -> None:
        """Physically delete whole blocks and update the model's config."""
        raise NotImplementedError

    def check_units(self, model: nn.Module, units) -> None:
        known = {info.unit for info in self.units(model)}
        for unit in units:
            if unit.is_block and unit not in known and unit.kind in self.block_lists \
                    and unit.index < len(self.block_list(model, unit.kind)):
                raise HpruneError(f"{unit.kind}.{unit.index} is the last {self.model_class} block, which cannot be "
                                  "removed whole (it feeds the output layer); remove its subcomponents instead.")
        bad = [str(u) for u in units if u not in known]
        if bad:
            sizes = ", ".join(f"{len(self.block_list(model, k))} {k}" for k in self.block_lists)
            raise HpruneError(
                f"the plan names units this {self.model_class} does not have: {', '.join(bad)} "
                f"(it has {sizes} blocks); list the valid ones with `hprune inspect MODEL`."
            )

    def make_plan(self, model: nn.Module, units, **fields):
        from hprune.plan import Plan

        units = [u if isinstance(u, Unit) else Unit.parse(u) for u in units]
        self.check_units(model, units)
        plan = Plan(family=self.family, arch=self.signature(model), units=units, **fields)
        removed = sum(self.unit_params(model, u) for u in plan.units)
        plan.ratio_reached = round(removed / self.total_params(model), 6)
        return plan


@dataclass
class Swap:
    """Replace `parent.<name>` by `new` (reversibly or for good)."""

    parent: nn.Module
    name: str
    new: nn.Module
