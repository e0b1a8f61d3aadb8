"""hprune: HierarchicalPrune for MMDiT text-to-image transformers."""

from __future__ import annotations

__version__ = "0.1.0"

from hprune.core.extras import guard_optional_kernels  # noqa: E402

guard_optional_kernels()  # an installed [quant] extra that cannot load here never breaks `import diffusers`

# Heavy imports (diffusers, torch) happen on first use, so `hprune --help` is fast.
_LAZY = {
    "load": ("hprune.folders.loading", "load"),
    "load_pipeline": ("hprune.folders.loading", "load_pipeline"),
    "save": ("hprune.folders.saving", "save"),
    "prune_": ("hprune.prune.surgery", "prune_"),
    "removed": ("hprune.prune.surgery", "removed"),
    "get_adapter": ("hprune.model", "get_adapter"),
    "Plan": ("hprune.planning.plan", "Plan"),
    "quantize_": ("hprune.quant.quantize", "quantize_"),
    "QuantConfig": ("hprune.quant.quantize", "QuantConfig"),
    "translate_layers": ("hprune.model.original_indices", "translate_layers"),
    "translate_state_dict": ("hprune.model.original_indices", "translate_state_dict"),
    "with_original_indices": ("hprune.model.original_indices", "with_original_indices"),
    "compile_blocks_": ("hprune.model.compile", "compile_blocks_"),
    "block_shapes": ("hprune.model.compile", "block_shapes"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'hprune' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
