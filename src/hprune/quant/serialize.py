"""Quantized model folders: config.json + weights + hprune_quant.json.

bnb-nf4 folders carry diffusers' `quantization_config` too (when diffusers'
own layer selection gives the same layers), so `from_pretrained` in a real
diffusers pipeline loads them without hprune. Every backend loads back
through `load_folder`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from hprune.errors import HpruneError
from hprune.quant import get_backend

SAFETENSORS_FILE = "diffusion_pytorch_model.safetensors"  # the name diffusers looks for
TORCH_FILE = "hprune_weights.pt"


def save_folder(model: nn.Module, out: Path, extra: dict) -> Path:
    from hprune.quantize import QUANT_FILE, describe

    config, result = model._hprune_quant
    backend = get_backend(config.backend)
    if out.exists() and any(out.iterdir()):
        raise HpruneError(f"{out} already exists and is not empty; choose another --out or remove it.")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_config(tmp)  # diffusers' own config.json, with _class_name
    if hasattr(backend, "diffusers_config") and _diffusers_selects_same(model, result):
        model_config = json.loads((tmp / "config.json").read_text())
        model_config["quantization_config"] = backend.diffusers_config(config, result.kept)
        (tmp / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    _write_state(model.state_dict(), tmp, backend.file_format)
    (tmp / QUANT_FILE).write_text(json.dumps({**describe(config, result), **extra}, indent=2) + "\n")
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out


def _write_state(state: dict, folder: Path, file_format: str) -> None:
    if file_format == "torch":
        torch.save(state, folder / TORCH_FILE)
        return
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(folder / SAFETENSORS_FILE))


def _diffusers_selects_same(model: nn.Module, result) -> bool:
    """diffusers skips a linear when any skip name is a *substring* of its name."""
    names = [n for n, m in model.named_modules() if n in result.quantized or n in result.kept]
    return all(any(k in n for k in result.kept) == (n in result.kept) for n in names)


def load_folder(folder: Path, device: torch.device) -> nn.Module:
    from hprune.quantize import QuantConfig, QuantResult, read_description

    info = read_description(folder)
    config = QuantConfig(**info["config"])
    backend = get_backend(config.backend)
    backend.check()
    model = _empty_model(folder)
    state = _read_state(folder, backend.file_format)
    with torch.no_grad():
        backend.restore(model, info["quantized"], state, config, device)
        _cast_unsaved_buffers(model, set(state), config.torch_compute_dtype)
    model.to(device).eval()
    model._hprune_quant = (config, QuantResult(config.backend, info["quantized"], info["kept"]))
    return model


def _empty_model(folder: Path) -> nn.Module:
    import diffusers
    from accelerate import init_empty_weights

    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization_config", None)
    cls = getattr(diffusers, config.get("_class_name", ""), None)
    if cls is None:
        raise HpruneError(f"{folder}/config.json names no diffusers model class; save the model again with `hprune quantize`.")
    with init_empty_weights(include_buffers=False):
        return cls.from_config(config)


def _read_state(folder: Path, file_format: str) -> dict:
    path = folder / (TORCH_FILE if file_format == "torch" else SAFETENSORS_FILE)
    if not path.exists():
        raise HpruneError(f"{path} is missing; the folder is incomplete, run `hprune quantize` again.")
    if file_format == "torch":
        return torch.load(path, map_location="cpu", weights_only=False)
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise HpruneError(f"{path} cannot be read ({err}); the file is corrupt or truncated, run `hprune quantize` again.") from None


def _cast_unsaved_buffers(model: nn.Module, saved: set, dtype: torch.dtype) -> None:
    for name, buf in model.named_buffers():
        if name not in saved and buf.is_floating_point():
            parent, _, leaf = name.rpartition(".")
            (model.get_submodule(parent) if parent else model)._buffers[leaf] = buf.to(dtype)
