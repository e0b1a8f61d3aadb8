"""The unit table of a model: what can be removed and what it weighs.

`unit_table` lists it for `hprune inspect`; `ModelUnits` is the table that `hprune profile` writes
beside its analysis (`units.json`) and that plans are made from, without loading the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.model import get_adapter
from hprune.model.units import Unit


def unit_table(model) -> list[dict]:
    adapter = get_adapter(model)
    total = adapter.total_params(model)
    return [
        {"unit": info.unit.key, "kind": info.unit.kind, "index": info.unit.index, "sub": info.unit.sub,
         "params": info.params, "share": info.params / total}
        for info in adapter.units(model)
    ]


def format_table(rows: list[dict], total: int) -> str:
    lines = [f"{'index':>5}  {'kind':<6}  {'subcomponent':<12}  {'params':>14}  {'share':>7}"]
    for r in rows:
        lines.append(f"{r['index']:>5}  {r['kind']:<6}  {r['sub']:<12}  {r['params']:>14,}  {100 * r['share']:6.2f}%")
    lines.append(f"total transformer parameters: {total:,}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ModelUnits:
    """What a plan needs to know about a model, without loading it."""

    family: str
    arch: dict
    total_params: int
    blocks: tuple[str, ...]  # whole-block unit keys, in forward order
    params: dict[str, int]  # unit key -> parameters it removes (blocks and subcomponents)

    @classmethod
    def from_model(cls, model) -> "ModelUnits":
        ad = get_adapter(model)
        return cls(
            family=ad.family,
            arch=ad.signature(model),
            total_params=int(ad.total_params(model)),
            blocks=tuple(u.key for u, _ in ad.blocks(model)),
            params={info.unit.key: int(info.params) for info in ad.units(model)},
        )

    def position(self, key: str) -> int:
        """Forward position of the block that holds unit `key` (0 = first block)."""
        return self._positions[Unit.parse(key).block_unit().key]

    @property
    def _positions(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.blocks)}

    def to_dict(self) -> dict:
        return {"family": self.family, "arch": self.arch, "total_params": self.total_params,
                "blocks": list(self.blocks), "params": self.params}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelUnits":
        return cls(data["family"], data["arch"], int(data["total_params"]), tuple(data["blocks"]),
                   {k: int(v) for k, v in data["params"].items()})

    @classmethod
    def load(cls, path: str | Path) -> "ModelUnits":
        path = Path(path)
        if not path.is_file():
            raise HpruneError(f"{path} does not exist; run `hprune profile` for this model first.")
        return cls.from_dict(json.loads(path.read_text()))
