"""What every model-family adapter provides.

An adapter knows one diffusers transformer class: where its blocks live, what
its removable units are, how many parameters each holds, and which submodule
to swap to remove a unit. Surgery (hprune.prune.surgery) uses only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from hprune.model.indices import BlockMap
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.core.provenance import base_config, steps_of


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
    # block kind -> the config field that holds how many blocks of that kind there are
    count_keys: dict[str, str] = {}

    def block_list(self, model: nn.Module, kind: str) -> nn.ModuleList:
        return getattr(model, self.block_lists[kind])

    def block_counts(self, config) -> dict[str, int]:
        """Block kind -> number of blocks, read from a diffusers config (dict or FrozenDict)."""
        return {kind: int(config[key]) for kind, key in self.count_keys.items()}

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
        """The original model's architecture (before any pruning): what a plan is made for."""
        return self.config_signature(base_config(model))

    def config_signature(self, config: dict) -> dict:
        raise NotImplementedError

    def removed_units(self, model: nn.Module) -> set[Unit]:
        """Units (original indices) that earlier prune steps took out of `model`."""
        return {Unit.parse(key) for step in steps_of(model, "prune") for key in step["plan"]["units"]}

    def block_map(self, model: nn.Module) -> BlockMap:
        """Original <-> current block indices of `model`."""
        return BlockMap.from_units(self.block_counts(base_config(model)), self.removed_units(model))

    def to_current(self, model: nn.Module, units) -> list[Unit]:
        """`units` (original indices) not yet removed from `model`, in its current indices."""
        done = self.removed_units(model)
        bmap = self.block_map(model)
        return [bmap.to_current(u) for u in units if u not in done and u.block_unit() not in done]

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


@dataclass
class Swap:
    """Replace `parent.<name>` by `new` (reversibly or for good)."""

    parent: nn.Module
    name: str
    new: nn.Module
