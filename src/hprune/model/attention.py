"""The fastest exact attention for a model on this GPU, on every path that runs it.

On an H200 (torch 2.11, bf16, 1024x1024; `scripts/attention_probe.py`, docs/benchmarks.md
"Attention") cuDNN's fused attention takes 0.50 ms at SD3.5 Large's shape (38 heads, 4,429
tokens, head size 64) against FlashAttention-2's 0.69 ms, and 0.44 ms against 0.80 ms at
FLUX.1's (24 heads, 4,608 tokens, 128); forward and backward 1.8 ms against 2.8-3.2 ms. Which of
the two torch's scaled_dot_product_attention runs depends on state outside the model: a fresh
process on Hopper picked cuDNN at both shapes (batch 1 and 2), eager and compiled, but once any
code had set SDPA's priority order, torch.compile traced flash even with cuDNN put first, and
hprune itself used to turn cuDNN's attention off for every model.

So the choice is made where the call happens: every attention module's processor is wrapped so
that its call runs under `torch.nn.attention.sdpa_kernel(CUDNN_ATTENTION)`, a context manager
that torch.compile traces (diffusers' own `_native_cudnn` backend relies on the same). This
reaches SD3's processor, which calls F.scaled_dot_product_attention itself (diffusers 0.42's
attention dispatcher never sees it), and FLUX's, which reaches the same function through the
dispatcher's default backend; eager, compiled, CUDA-graphed and a user's pipeline all run it.
Only head sizes 64 and 128 on Hopper or newer are wrapped; elsewhere cuDNN's attention is turned
off, as it hit illegal memory accesses at the shapes teachers' head size 28 on torch 2.11.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn as nn

from hprune.core.cuda import avoid_cudnn_attention

# Head sizes of SD3/SD3.5 (64) and FLUX.1 (128), where cuDNN was measured faster and ran without errors.
CUDNN_HEAD_DIMS = frozenset({64, 128})
CUDNN = "cudnn"
WITHOUT_CUDNN = "flash"
DEFAULT = "default"
_MARK = "_hprune_sdpa_backend"


def head_dims(model: nn.Module) -> set[int]:
    """Attention head sizes of a diffusers transformer (from its config), empty when unknown."""
    dim = getattr(getattr(model, "config", None), "attention_head_dim", None)
    return {int(dim)} if dim else set()


def use_fastest_attention(model: nn.Module) -> str:
    """Make every attention call of `model` run the fastest exact kernel on the current CUDA GPU;
    returns the choice: "cudnn" (Hopper or newer at head sizes 64/128: processors wrapped),
    "flash" (other head sizes: cuDNN's attention turned off for the process) or "default" (no CUDA
    GPU; nothing changed). Call it before torch.compile or CUDA-graph capture of the model;
    calling it again is harmless."""
    if not torch.cuda.is_available():
        return DEFAULT
    dims = head_dims(model)
    if dims and dims <= CUDNN_HEAD_DIMS and torch.cuda.get_device_capability() >= (9, 0):
        for module in attention_modules(model):
            module.processor = with_sdpa_backend(module.processor, "CUDNN_ATTENTION")
        return CUDNN
    avoid_cudnn_attention()
    return WITHOUT_CUDNN


def restore_default_attention(model: nn.Module | None = None) -> None:
    """Undo use_fastest_attention: the model's own processors back, cuDNN's attention enabled."""
    torch.backends.cuda.enable_cudnn_sdp(True)
    for module in attention_modules(model) if model is not None else ():
        module.processor = getattr(module.processor, "_hprune_inner", module.processor)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "processor") and hasattr(m, "set_processor")]


def with_sdpa_backend(processor, backend: str):
    """A copy of `processor` whose calls run under sdpa_kernel(SDPBackend.<backend>). Its class is a subclass
    of the processor's with the same call signature, which diffusers inspects to route kwargs."""
    if getattr(processor, _MARK, None) == backend:
        return processor
    inner = getattr(processor, "_hprune_inner", processor)
    wrapped = copy.copy(inner)
    wrapped.__class__ = _subclass(type(inner), backend)
    wrapped._hprune_inner = inner
    return wrapped


@functools.cache
def _subclass(base: type, backend: str) -> type:
    # one class per (processor class, backend): torch.compile guards on the class, and a class per
    # module would recompile every block
    from torch.nn.attention import SDPBackend

    sdpa = getattr(SDPBackend, backend)

    @functools.wraps(base.__call__)
    def __call__(self, attn, *args, **kwargs):
        from torch.nn.attention import sdpa_kernel

        hidden_states = args[0] if args else kwargs.get("hidden_states")
        if hidden_states is None or not hidden_states.is_cuda:  # a model moved off the GPU
            return base.__call__(self, attn, *args, **kwargs)
        with sdpa_kernel(sdpa):
            return base.__call__(self, attn, *args, **kwargs)

    def __reduce__(self):  # the class is made here, not importable: pickle the processor it wraps
        return with_sdpa_backend, (self._hprune_inner, backend)

    return type(base.__name__, (base,), {"__call__": __call__, "__reduce__": __reduce__, _MARK: backend,
                                         "__module__": base.__module__})
