"""Save any model an hprune stage made: weights, config.json and the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch.nn as nn

from hprune.core.files import default_mode
from hprune.core.atomic import atomic_folder
from hprune.folders.manifest import Manifest
from hprune.folders.paths import CONFIG, pipeline_folder
from hprune.folders.weights import write_state
from hprune.core.provenance import base_config, history
from hprune.quant import get_backend
from hprune.quant.serialize import diffusers_quantization_config
from hprune.quant.quantize import quant_state


def save(model: nn.Module, out: str | Path, source: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write `model` and its manifest (`hprune.json`) to `out`, atomically.

    With `source` a pipeline folder (or a shipped teacher's name), its other
    components are copied and `out` is a whole pipeline with the model as its
    transformer/. Unquantized models are written by diffusers' `save_pretrained`,
    so whole-block plans also load with plain diffusers `from_pretrained`.
    Raises HpruneError when `out` exists (and `overwrite` is not set) or is a file."""
    pipeline = pipeline_folder(source) if source is not None else None
    with atomic_folder(out, overwrite) as tmp:
        target = tmp
        if pipeline is not None:
            shutil.copytree(pipeline, tmp, ignore=shutil.ignore_patterns("transformer"), dirs_exist_ok=True)
            target = tmp / "transformer"
        _write_model(model, target)
        Manifest(base_config(model), history(model)).write(target)
        for written in tmp.rglob("*"):  # safetensors writes 0600; every file of the folder gets 0644
            if written.is_file():
                default_mode(written)
    return Path(out)


def _write_model(model: nn.Module, target: Path) -> None:
    quant = quant_state(model)
    if quant is None:
        model.save_pretrained(target)
        return
    config, result = quant
    backend = get_backend(config.backend)
    target.mkdir(parents=True, exist_ok=True)
    model.save_config(target)
    extra = diffusers_quantization_config(model, backend, config, result)
    model_config = json.loads((target / CONFIG).read_text())
    (target / CONFIG).write_text(json.dumps({**model_config, "quantization_config": extra}, indent=2) + "\n")
    write_state(model.state_dict(), target, backend.file_format)
