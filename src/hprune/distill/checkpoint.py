"""Training checkpoints written atomically; resume restores them exactly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hprune.core.atomic import atomic_folder
from hprune.core.files import default_mode

LATEST = "latest"


def save_checkpoint(root: Path, step: int, model, optimizer, ema=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    # Ctrl-C or a kill mid-write: the last whole checkpoint stays the latest, nothing half-written
    with atomic_folder(final, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "student.safetensors"))
        default_mode(tmp / "student.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if ema is not None:
            torch.save(ema.state_dict(), tmp / "ema.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}))
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, ema=None) -> int:
    model.load_state_dict(load_file(str(path / "student.safetensors")))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    if ema is not None and (path / "ema.pt").is_file():
        ema.load_state_dict(torch.load(path / "ema.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())["step"]
