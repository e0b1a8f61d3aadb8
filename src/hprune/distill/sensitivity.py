"""Per-block sensitivity dP for SGDistill, read from `hprune profile`'s table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hprune.arch.units import Unit
from hprune.errors import HpruneError
from hprune.files import read_jsonl


def load_sensitivity(path: str | Path) -> dict[str, float]:
    """Unit key -> dP, for every measured block and subcomponent. A block with no
    whole-block row (SD3's last block can only lose subcomponents) gets the sum
    of its subcomponents' drops."""
    path = Path(path)
    if not path.is_file():
        raise HpruneError(f"sensitivity table {path} does not exist; run `hprune profile` first.")
    rows = read_jsonl(path)
    single = [(Unit.parse(r["units"][0]), float(r["dP"])) for r in rows if len(r.get("units", [])) == 1]
    parts: dict[str, float] = defaultdict(float)
    for unit, dp in single:
        if not unit.is_block:
            parts[unit.block_unit().key] += dp
    return {**parts, **{u.key: dp for u, dp in single}}
