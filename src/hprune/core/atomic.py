"""The one way hprune writes a folder: into a hidden sibling that is renamed
into place only when complete, so a kill or an error never leaves half a
model behind."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from hprune.core.errors import HpruneError


def check_out(out: Path, overwrite: bool = False) -> None:
    """Raise HpruneError before any work when `out` cannot become a fresh folder."""
    if out.exists() and not out.is_dir():
        raise HpruneError(f"{out} is a file; choose an --out folder path that does not exist.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise HpruneError(f"{out} already exists and is not empty; choose another --out or remove it.")


@contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False):
    """Yield a temporary folder; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
