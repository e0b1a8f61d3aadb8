"""hprune: HierarchicalPrune for MMDiT text-to-image transformers."""

from __future__ import annotations

__version__ = "0.1.0"

from hprune.extras import guard_optional_kernels  # noqa: E402

guard_optional_kernels()  # an installed [quant] extra that cannot load here never breaks `import diffusers`

# Heavy imports (diffusers, torch) happen on first use, so `hprune --help` is fast.
_LAZY = {
    "load": ("hprune.folders.loading", "load"),
    "load_pipeline": ("hprune.folders.loading", "load_pipeline"),
    "save": ("hprune.folders.saving", "save"),
    "prune_": ("hprune.surgery", "prune_"),
    "removed": ("hprune.surgery", "removed"),
    "get_adapter": ("hprune.arch", "get_adapter"),
    "Plan": ("hprune.plan", "Plan"),
    "quantize_": ("hprune.quantize", "quantize_"),
    "QuantConfig": ("hprune.quantize", "QuantConfig"),
    "translate_layers": ("hprune.arch.original_indices", "translate_layers"),
    "translate_state_dict": ("hprune.arch.original_indices", "translate_state_dict"),
    "with_original_indices": ("hprune.arch.original_indices", "with_original_indices"),
    "compile_blocks_": ("hprune.compile", "compile_blocks_"),
    "block_shapes": ("hprune.compile", "block_shapes"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'hprune' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
