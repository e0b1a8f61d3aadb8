"""Quantization backends behind one small interface (see hprune.quant.quantize).

Each backend module defines a `Backend` instance; this registry is the only
place that loads them. Their names are declared in hprune.quant.names, which
`hprune quantize --backend` and `hprune bench --quant` offer without loading
torch (this package imports torch only inside functions, for the same reason).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hprune.core.errors import HpruneError

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class Backend:
    name: str
    summary: str
    packages: tuple[str, ...] = ()  # import names
    pip_names: tuple[str, ...] = ()
    needs_gpu: bool = False
    file_format: str = "safetensors"  # or "torch" for tensor subclasses
    extra: dict = field(default_factory=dict)
    # what the backend is not good for, said when a command picks it (`note: ...` on stderr); "" for none
    caution: str = ""

    def check(self, device=None, folder=None) -> None:
        """Raise HpruneError naming the fix when a GPU or a package is missing: before
        any work, for quantizing on `device` (None: cuda when visible), or for loading
        the quantized `folder`. A missing GPU is said first: installing a package
        would not help."""
        import torch

        on_cpu = not torch.cuda.is_available() if device is None else torch.device(device).type != "cuda"
        if self.needs_gpu and on_cpu:
            where = "and none is visible" if not torch.cuda.is_available() else f"and --device is {device}"
            if folder is not None:
                raise HpruneError(f"{folder} was quantized with {self.name}, which needs a CUDA GPU {where}; "
                                  "load it on a GPU machine, or quantize the 16-bit model with --backend bnb-nf4 "
                                  "or w4fp8 (both run on CPU).")
            raise HpruneError(f"backend '{self.name}' needs a CUDA GPU {where}; run on a GPU machine or pick "
                              "--backend bnb-nf4 or w4fp8, which also run (slowly) on CPU.")
        missing = [pip for imp, pip in zip(self.packages, self.pip_names) if importlib.util.find_spec(imp) is None]
        if missing and folder is not None:
            raise HpruneError(f"{folder} was quantized with {self.name}, which needs {', '.join(missing)} to load; "
                              f"install it with `pip install {' '.join(missing)}`.")
        if missing:
            raise HpruneError(f"backend '{self.name}' needs {', '.join(missing)}; install it with "
                              f"`pip install {' '.join(missing)}` or pick another --backend.")

    def supports(self, linear: nn.Linear, config) -> bool:
        """Whether `linear` takes this backend under `config` (a QuantConfig); the others stay 16-bit and are
        listed as kept."""
        return True

    def convert(self, model: nn.Module, names: list[str], config) -> None:
        raise NotImplementedError

    def restore(self, model: nn.Module, names: list[str], state: dict, config, device) -> None:
        """Fill a model built on the meta device from a saved state dict."""
        raise NotImplementedError


_MODULES = ("hprune.quant.w4fp8_backend", "hprune.quant.bnb", "hprune.quant.torchao_backends")


def backends() -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for mod in _MODULES:
        for backend in importlib.import_module(mod).BACKENDS:
            out[backend.name] = backend
    return out


def get_backend(name: str) -> Backend:
    known = backends()
    if name not in known:
        raise HpruneError(f"unknown quantization backend '{name}'; choose one of {sorted(known)}.")
    return known[name]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
