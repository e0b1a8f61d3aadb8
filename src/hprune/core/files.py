"""Small file helpers every long step uses: writes that are never seen half
done, and JSON-lines tables that survive a kill mid-line."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write to a sibling temp file, then rename over `path`; a failed write
    (disk full, `path` a folder) removes the temp file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:  # never written, or its folder is not one
            pass
        raise


def write_json(path: str | Path, data, indent: int = 1, sort_keys: bool = False) -> None:
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Finished rows of a JSON-lines table; a line cut short by a kill is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def default_mode(path: str | Path) -> None:
    """Give `path` the permissions any new file gets here (0644 under umask 022):
    safetensors writes its files readable by their owner only (0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
