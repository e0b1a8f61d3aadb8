"""Model-family adapters. Only this package knows diffusers class names.

The adapters (and torch) load on first use: `hprune.model.units`, which plans and
the CLI's argument parsing read, must not pull torch in through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hprune.model.units import Unit
from hprune.core.errors import HpruneError

if TYPE_CHECKING:
    import torch.nn as nn

    from hprune.model.base import Adapter, UnitInfo


def _adapter_classes() -> tuple[type[Adapter], ...]:
    from hprune.model.flux import FluxAdapter
    from hprune.model.sd3 import SD3Adapter

    return (SD3Adapter, FluxAdapter)


def _adapters() -> dict[str, type[Adapter]]:
    """Model class name -> adapter class."""
    return {a.model_class: a for a in _adapter_classes()}


def __getattr__(name: str):
    if name == "ADAPTERS":
        return _adapters()
    if name == "FAMILIES":  # family -> adapter class
        return {a.family: a for a in _adapter_classes()}
    if name in ("Adapter", "UnitInfo"):
        from hprune.model import base

        return getattr(base, name)
    raise AttributeError(f"module 'hprune.model' has no attribute '{name}'")


def get_adapter(model: nn.Module) -> Adapter:
    return adapter_for_class(type(model).__name__)


def adapter_for_class(class_name: str) -> Adapter:
    adapters = _adapters()
    if class_name not in adapters:
        raise HpruneError(
            f"hprune does not support {class_name}; supported transformer classes are {', '.join(adapters)}."
        )
    return adapters[class_name]()


__all__ = ["Adapter", "UnitInfo", "Unit", "get_adapter", "adapter_for_class", "ADAPTERS", "FAMILIES"]
