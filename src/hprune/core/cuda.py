"""CUDA settings every GPU entry point applies, and the one check of --device.

torch is imported inside the functions: the CLI parses arguments with this
module before it loads any model.
"""

from __future__ import annotations

from hprune.core.errors import HpruneError

AUTO = "auto"
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (cuda when a CUDA GPU is visible, else cpu)"


def resolve_device(text: str | None) -> str:
    """The device a command runs on: 'auto' (or None) picks cuda when a GPU is
    visible; 'cuda' without a visible GPU is an HpruneError, raised before any work."""
    import torch

    text = (text or AUTO).strip().lower()
    if text == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise HpruneError(f"--device takes {DEVICE_HELP}; got '{text}'.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HpruneError(f"--device {text} was asked for but no CUDA GPU is visible; "
                              "drop --device or pass --device cpu.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise HpruneError(f"--device {text} was asked for but only {count} CUDA GPU(s) are visible "
                              f"(cuda:0 to cuda:{count - 1}); pass one of those or --device cpu.")
    return text


def avoid_cudnn_attention() -> None:
    """cuDNN's fused attention hit illegal memory accesses with the toy
    teachers' head sizes (28) on torch 2.11 / H100 (seen in training, in
    generation and in the ablation's distillation jobs); flash and
    memory-efficient SDPA kernels are used instead."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)
