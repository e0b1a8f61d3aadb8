"""Weight files of a model folder: safetensors (any name, sharded or not), or
one torch file for backends whose tensor subclasses safetensors cannot hold."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from hprune.core.errors import HpruneError

SAFETENSORS_FILE = "diffusion_pytorch_model.safetensors"  # the name diffusers looks for
TORCH_FILE = "hprune_weights.pt"


def check_safetensors(file: Path) -> None:
    """Fail clearly on a truncated or corrupt .safetensors file, before torch does."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > size:
                raise ValueError
            header = json.loads(fh.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, struct.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise HpruneError(f"{file} is not a readable safetensors file; re-download or re-save the model.") from None
    if size < 8 + header_len + end:
        raise HpruneError(
            f"{file} is truncated ({size} of {8 + header_len + end} bytes); re-download or re-save the model."
        )


def weight_files(folder: Path) -> list[Path]:
    """The folder's weight files, checked; raises HpruneError when there are none."""
    if (folder / TORCH_FILE).is_file():
        return [folder / TORCH_FILE]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise HpruneError(f"{folder} has no .safetensors weights; save the model with safetensors.")
    for file in files:
        check_safetensors(file)
    return files


def stored_dtype(folder: Path) -> torch.dtype:
    """The floating-point dtype most of the folder's safetensors weights are stored in (by count)."""
    from collections import Counter

    from safetensors import safe_open

    counts = Counter()
    for file in weight_files(folder):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                dtype = f.get_slice(key).get_dtype()
                counts[dtype] += 1
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    floats = [(n, d) for d, n in counts.items() if d in names]
    return names[max(floats)[1]] if floats else torch.float32


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weight files, on the CPU."""
    from safetensors.torch import load_file

    state = {}
    for file in weight_files(folder):
        if file.name == TORCH_FILE:
            # torchao's tensor subclasses need full unpickling: load only folders you made.
            return torch.load(file, map_location="cpu", weights_only=False)
        state.update(load_file(str(file)))
    return state


def write_state(state: dict, folder: Path, file_format: str) -> None:
    if file_format == "torch":
        torch.save(state, folder / TORCH_FILE)
        return
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(folder / SAFETENSORS_FILE))
