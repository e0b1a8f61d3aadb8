"""Timing and memory protocol (see /docs/benchmarks.md, "Method").

Per-step latency: CUDA events around one transformer forward, after warm-up,
median of `repeats` (>= 10). Peak memory: torch.cuda.max_memory_allocated
after a reset, with only this model and its inputs resident, over one step:
weights plus activations. Breakdown: CUDA kernel time of one step from the
profiler, grouped by what the kernel does.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

import torch

GIB = 1024**3


def time_step_ms(model, kwargs: dict, warmup: int = 3, repeats: int = 10) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(**kwargs)
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(**kwargs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_steps_ms(model, kwargs: dict, timesteps: list[float], set_t, repeats: int = 3) -> float:
    """End-to-end transformer time for a sampling run of len(timesteps) steps (median of `repeats`)."""
    totals = []
    with torch.inference_mode():
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for t in timesteps:
                set_t(kwargs, t)
                model(**kwargs)
            end.record()
            end.synchronize()
            totals.append(start.elapsed_time(end))
    return statistics.median(totals)


def peak_step_gib(model, kwargs: dict, baseline_bytes: int) -> float:
    """Peak allocated during one step, minus what was allocated before the model existed."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(**kwargs)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - baseline_bytes) / GIB


# First match wins; names of cuBLAS/CUTLASS/cuDNN/FA/Triton/inductor kernels as seen on H100.
CATEGORIES = [
    ("attention", r"flash|fmha|attention|sdpa|cudnn.*(attn|mha)|_attn"),
    ("linear (gemm)", r"gemm|gemv|matmul|nvjet|cutlass|xmma|_w4fp8|kgemm|_mm_|\bmm\b|splitk|_scaled_mm|int4|tinygemm|mslk|f8f8"),
    ("quant/dequant", r"quant|dequant|unpack|absmax|float8|fp8|_to_copy.*8"),
    ("norm", r"norm|rms|layer_norm"),
]


def categorize(kernel_name: str) -> str:
    low = kernel_name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, low):
            return label
    return "elementwise/other"


def kernel_breakdown(model, kwargs: dict) -> dict:
    """CUDA time (ms) of one step by kernel category, plus the step's wall time for the gaps."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(**kwargs)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(**kwargs)
            torch.cuda.synchronize()
    by_cat: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages():
        device_us = getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0)
        if device_us > 0 and evt.device_type == torch.autograd.DeviceType.CUDA:
            by_cat[categorize(evt.key)] += device_us / 1000.0
    return {k: round(v, 3) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])}
