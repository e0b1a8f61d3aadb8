"""What a quantized folder needs beyond its state dict: diffusers'
`quantization_config`, so that bnb-nf4 folders load in plain diffusers too, and
for every other folder a `quantization_config` diffusers refuses to load
("Unknown quantization type, got hprune"): without one, diffusers' from_pretrained
would build the 16-bit model, find none of its weights and fill them at random
with only a warning."""

from __future__ import annotations

import torch.nn as nn


HPRUNE_ONLY = "hprune"


def diffusers_quantization_config(model: nn.Module, backend, config, result) -> dict:
    """config.json's `quantization_config`: diffusers' own for backends it knows, when its
    layer selection gives the same layers; else hprune's marker, which plain diffusers refuses."""
    if not hasattr(backend, "diffusers_config") or not _diffusers_selects_same(model, result):
        return {"quant_method": HPRUNE_ONLY, "backend": backend.name,
                "load_with": "hprune.load(path) or hprune.load_pipeline(path)"}
    return backend.diffusers_config(config, result.kept)


def _diffusers_selects_same(model: nn.Module, result) -> bool:
    """diffusers skips a linear when any skip name is a *substring* of its name."""
    names = [n for n, m in model.named_modules() if n in result.quantized or n in result.kept]
    return all(any(k in n for k in result.kept) == (n in result.kept) for n in names)
