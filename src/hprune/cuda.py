"""CUDA settings every GPU entry point applies."""

from __future__ import annotations

import torch


def avoid_cudnn_attention() -> None:
    """cuDNN's fused attention hit illegal memory accesses with the toy
    teachers' head sizes (28) on torch 2.11 / H100 (seen in training, in
    generation and in the ablation's distillation jobs); flash and
    memory-efficient SDPA kernels are used instead."""
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)
