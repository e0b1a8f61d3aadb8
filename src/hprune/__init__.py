"""hprune: HierarchicalPrune for MMDiT text-to-image transformers."""

from __future__ import annotations

__version__ = "0.1.0"

# Heavy imports (diffusers, torch) happen on first use, so `hprune --help` is fast.
_LAZY = {
    "load_pruned": ("hprune.io", "load_pruned"),
    "load_transformer": ("hprune.io", "load_transformer"),
    "load_pruned_pipeline": ("hprune.io", "load_pruned_pipeline"),
    "save_pruned": ("hprune.io", "save_pruned"),
    "prune_": ("hprune.surgery", "prune_"),
    "removed": ("hprune.surgery", "removed"),
    "get_adapter": ("hprune.arch", "get_adapter"),
    "Plan": ("hprune.plan", "Plan"),
    "load_pipeline": ("hprune.toy.pipeline", "load_pipeline"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'hprune' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
