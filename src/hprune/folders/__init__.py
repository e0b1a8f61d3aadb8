"""The model-folder contract: every stage writes a folder that `load` rebuilds.

A model folder is a diffusers model folder (config.json + weights) plus
`hprune.json`, the manifest of what was done to the original model
(see `hprune.folders.manifest`). Names load on first use, so that the light
modules here (paths, manifest, atomic) import without torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load": "hprune.folders.loading", "load_pipeline": "hprune.folders.loading", "save": "hprune.folders.saving",
    "Manifest": "hprune.folders.manifest", "MANIFEST": "hprune.folders.manifest",
    "model_folder": "hprune.folders.paths", "pipeline_folder": "hprune.folders.paths",
}
__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'hprune.folders' has no attribute '{name}'")
    return getattr(importlib.import_module(_LAZY[name]), name)
