"""Model-family adapters. Only this package knows diffusers class names."""

from __future__ import annotations

import torch.nn as nn

from hprune.arch.base import Adapter, UnitInfo
from hprune.arch.flux import FluxAdapter
from hprune.arch.sd3 import SD3Adapter
from hprune.arch.units import Unit
from hprune.errors import HpruneError

ADAPTERS: dict[str, type[Adapter]] = {a.model_class: a for a in (SD3Adapter, FluxAdapter)}
FAMILIES: dict[str, type[Adapter]] = {a.family: a for a in (SD3Adapter, FluxAdapter)}


def get_adapter(model: nn.Module) -> Adapter:
    name = type(model).__name__
    if name not in ADAPTERS:
        raise HpruneError(
            f"hprune does not support {name}; supported transformer classes are {', '.join(ADAPTERS)}."
        )
    return ADAPTERS[name]()


def adapter_for_class(class_name: str) -> Adapter:
    if class_name not in ADAPTERS:
        raise HpruneError(
            f"hprune does not support {class_name}; supported transformer classes are {', '.join(ADAPTERS)}."
        )
    return ADAPTERS[class_name]()


__all__ = ["Adapter", "UnitInfo", "Unit", "get_adapter", "adapter_for_class", "ADAPTERS", "FAMILIES"]
