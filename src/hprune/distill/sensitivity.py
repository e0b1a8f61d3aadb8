"""Per-block sensitivity dP for SGDistill, read from `hprune profile`'s table."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from hprune.arch.units import Unit
from hprune.errors import HpruneError


def load_sensitivity(path: str | Path) -> dict[str, float]:
    """Block key -> dP. A block with no whole-block row (SD3's last block can
    only lose subcomponents) gets the sum of its subcomponents' drops."""
    path = Path(path)
    if not path.is_file():
        raise HpruneError(f"sensitivity table {path} does not exist; run `hprune profile` first.")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    single = [(Unit.parse(r["units"][0]), float(r["dP"])) for r in rows if len(r.get("units", [])) == 1]
    blocks = {u.key: dp for u, dp in single if u.is_block}
    parts: dict[str, float] = defaultdict(float)
    for unit, dp in single:
        if not unit.is_block:
            parts[unit.block_unit().key] += dp
    return {**parts, **blocks}
