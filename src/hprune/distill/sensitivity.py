"""Per-block sensitivity dP for SGDistill, read from `hprune profile`'s table."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl

log = logging.getLogger("hprune")


def load_sensitivity(path: str | Path) -> dict[str, float]:
    """Unit key -> dP, for every measured block and subcomponent.

    Every block has a whole-block row in an analysis made since SD3's last block
    is measured too (the analysis skips it; surgery still cannot remove it). An
    older table lacks that row: the block then gets the sum of its
    subcomponents' drops, a stand-in (1.10 in the committed shapes-sd3 analysis,
    about 3x the largest measured block drop) that is logged, naming the block."""
    path = Path(path)
    if not path.is_file():
        raise HpruneError(f"sensitivity table {path} does not exist; run `hprune profile` first.")
    rows = read_jsonl(path)
    single = [(Unit.parse(r["units"][0]), float(r["dP"])) for r in rows if len(r.get("units", [])) == 1]
    measured = {u.key: dp for u, dp in single}
    parts: dict[str, float] = defaultdict(float)
    for unit, dp in single:
        if not unit.is_block:
            parts[unit.block_unit().key] += dp
    summed = sorted(key for key in parts if key not in measured)
    if summed:
        log.warning("hprune: %s has no whole-block dP in %s; using the sum of its subcomponents' drops. "
                    "Run `hprune profile` into that folder again with its settings: the resumed run "
                    "measures only the missing rows.", ", ".join(summed), path)
    return {**parts, **measured}
