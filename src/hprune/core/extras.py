"""Optional extras never break the base install.

`pip install hprune[quant]` brings torchao and mslk-cuda. diffusers imports
torchao whenever it is installed, and torchao imports mslk whenever it is
installed; on a machine whose torch has no CUDA, mslk's native library cannot
load (`libc10_cuda.so: cannot open shared object file`) and that error would
break `import diffusers`, so every command. `guard_optional_kernels()` (run by
`import hprune`) hides such a kernel package: torchao then sees it as absent,
as it would on a machine without the extra. The trial import happens only when
torchao is about to be imported, so `hprune --help` stays free of torch. (A script
that imports diffusers before hprune meets the error before the guard exists.)
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys

# Kernel packages that torchao imports without a guard, and the package whose
# import triggers the trial.
KERNEL_PACKAGES = ("mslk",)
TRIGGER = "torchao"

# name -> why it was hidden (for messages: "mslk could not load: ...")
HIDDEN: dict[str, str] = {}


class _KernelGuard(importlib.abc.MetaPathFinder):
    """Before torchao's first import, tries each kernel package; one that fails
    to load is marked absent (sys.modules[name] = None: find_spec then answers None)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == TRIGGER and TRIGGER not in sys.modules:
            sys.meta_path.remove(self)  # once is enough, and no recursion
            for name in KERNEL_PACKAGES:
                try_kernel_package(name)
            if HIDDEN:  # no CUDA here: torchao's warnings that its CUDA kernels did not load are noise
                logging.getLogger(TRIGGER).setLevel(logging.ERROR)
        return None  # the ordinary finders locate the package itself


def try_kernel_package(name: str) -> bool:
    """Import `name` if it is installed; when it is installed but cannot load, hide
    it and record why. True when it is usable."""
    if name in sys.modules:
        return sys.modules[name] is not None
    if importlib.util.find_spec(name) is None:
        return False
    logging.disable(logging.CRITICAL)  # mslk logs its load failure at ERROR before raising
    try:
        importlib.import_module(name)
        return True
    except Exception as err:  # OSError from a missing CUDA library, ImportError, RuntimeError
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        sys.modules[name] = None
        HIDDEN[name] = " ".join(str(err).split())
        return False
    finally:
        logging.disable(logging.NOTSET)


def guard_optional_kernels() -> None:
    if not any(isinstance(f, _KernelGuard) for f in sys.meta_path):
        sys.meta_path.insert(0, _KernelGuard())
