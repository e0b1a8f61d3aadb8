"""Original block indices <-> the indices of a pruned model.

Plans, LoRA keys, skip-layer guidance and every other per-block setting name
blocks by their index in the *original* model; whole-block pruning renumbers
the survivors. A `BlockMap` translates between the two numberings.
"""

from __future__ import annotations

from dataclasses import dataclass

from hprune.model.units import Unit
from hprune.core.errors import HpruneError


@dataclass(frozen=True)
class BlockMap:
    """`original`: block kind -> block count of the original model;
    `removed`: block kind -> original indices of the blocks removed whole."""

    original: dict[str, int]
    removed: dict[str, frozenset[int]]

    @classmethod
    def from_units(cls, original: dict[str, int], units) -> "BlockMap":
        removed = {kind: frozenset(u.index for u in units if u.kind == kind and u.is_block) for kind in original}
        return cls(dict(original), removed)

    def mapping(self, kind: str) -> dict[int, int]:
        """Original index -> current index of every surviving block of `kind`."""
        kept = [i for i in range(self.original[kind]) if i not in self.removed[kind]]
        return {old: new for new, old in enumerate(kept)}

    def current(self, kind: str, index: int) -> int | None:
        """The current index of original block `index`, None when it was removed."""
        if not 0 <= index < self.original.get(kind, 0):
            raise HpruneError(f"the original model does not have block {kind}.{index} (it has "
                              f"{self.original.get(kind, 0)} {kind} blocks); list the valid ones with `hprune inspect MODEL`.")
        return self.mapping(kind).get(index)

    def to_current(self, unit: Unit) -> Unit | None:
        """`unit` (original indices) in the current numbering; None when its block was removed."""
        index = self.current(unit.kind, unit.index)
        return None if index is None else Unit(unit.kind, index, unit.sub)
