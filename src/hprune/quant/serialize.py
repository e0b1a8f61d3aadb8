"""What a quantized folder needs beyond its state dict: diffusers'
`quantization_config`, so that bnb-nf4 folders load in plain diffusers too."""

from __future__ import annotations

import torch.nn as nn


def diffusers_quantization_config(model: nn.Module, backend, config, result) -> dict | None:
    """config.json's `quantization_config` for backends diffusers knows, when diffusers'
    own layer selection gives the same layers; else None."""
    if not hasattr(backend, "diffusers_config") or not _diffusers_selects_same(model, result):
        return None
    return backend.diffusers_config(config, result.kept)


def _diffusers_selects_same(model: nn.Module, result) -> bool:
    """diffusers skips a linear when any skip name is a *substring* of its name."""
    names = [n for n, m in model.named_modules() if n in result.quantized or n in result.kept]
    return all(any(k in n for k in result.kept) == (n in result.kept) for n in names)
