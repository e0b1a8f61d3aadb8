"""Where one training step's GPU time goes, from a torch.profiler Chrome trace (CUDA activity).

    python scripts/trace_summary.py TRACE.json [--boundary multi_tensor_apply] [--out summary.json]

The last complete step is the window between the ends of the last two clusters of kernels whose names
contain --boundary (the foreach / fused kernels of gradient clipping and AdamW end every step of
hprune.distill). In it: the wall time, the time some
kernel ran (the union of kernel intervals), the idle time, kernel time by category, the longest
kernels and the longest idle gaps with the kernels on either side. Used by scale_distill.py --profile.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict

# first match wins: (category, substrings of the lower-cased kernel name); inductor's kernels are named
# after the ops they fuse ("_to_copy", "_scaled_dot_product_cudnn_attention_cat"), so "triton_" is read before "attention" and "copy"
CATEGORIES = (
    ("optimizer and gradient clipping (foreach / fused)", ("multi_tensor_apply", "adam")),
    ("inductor (fused pointwise / norm / reduction)", ("triton_",)),
    ("attention", ("fmha", "flash", "sdpa_sm90", "_sdpa_", "attention")),
    ("gemm", ("gemm", "gemv", "xmma", "cutlass", "cublas", "nvjet", "splitk")),
    ("copy, memset", ("memcpy", "memset", "direct_copy", "copy_kernel", "nchwtonhwc", "nhwctonchw")),
    ("aten elementwise / reduction", ("elementwise", "reduce", "vectorized")),
)


def category(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other"


def kernels(trace: dict) -> list[tuple[float, float, str]]:
    """(start us, end us, name) of every GPU kernel, memcpy and memset, sorted by start."""
    out = [(e["ts"], e["ts"] + e.get("dur", 0.0), e["name"]) for e in trace.get("traceEvents", [])
           if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    return sorted(out)


def busy_and_gaps(spans: list[tuple[float, float, str]], lo: float, hi: float):
    """Union length of the spans clipped to [lo, hi], and the idle gaps (length, before, after)."""
    busy, gaps, end, before = 0.0, [], lo, "(window start)"
    for start, stop, name in spans:
        start, stop = max(start, lo), min(stop, hi)
        if stop <= start:
            continue
        if start > end:
            gaps.append((start - end, before, name))
        if stop > end:
            busy += stop - max(start, end)
            end, before = stop, name
    if hi > end:
        gaps.append((hi - end, before, "(window end)"))
    return busy, gaps


def step_ends(spans: list[tuple[float, float, str]], boundary: str, join: int = 16) -> list[float]:
    """Where each cluster of boundary kernels ends. One optimizer step launches several (one fused
    kernel per parameter group and chunk, the step counters, gradient clipping's foreach norm), with at
    most `join` other kernels between them."""
    hits = [i for i, (_, _, name) in enumerate(spans) if boundary.lower() in name.lower()]
    return [spans[i][1] for i, j in zip(hits, hits[1:] + [None]) if j is None or j - i > join + 1]


def summarize(trace: dict, boundary: str = "multi_tensor_apply", top: int = 20, join: int = 16) -> dict:
    spans = kernels(trace)
    ends = step_ends(spans, boundary, join)
    if len(ends) < 2:
        raise ValueError(f"fewer than two optimizer steps (clusters of kernels named like '{boundary}') in the "
                         "trace: no complete step")
    lo, hi = ends[-2], ends[-1]
    inside = [(s, e, n) for s, e, n in spans if e > lo and s < hi]
    busy, gaps = busy_and_gaps(inside, lo, hi)
    by_cat, by_name = defaultdict(float), defaultdict(float)
    for s, e, n in inside:
        d = min(e, hi) - max(s, lo)
        by_cat[category(n)] += d
        by_name[n] += d  # whole names: kernels differ in their template arguments, late in the name
    ms = lambda us: round(us / 1000, 3)  # noqa: E731
    return {
        "step_wall_ms": ms(hi - lo), "gpu_busy_ms": ms(busy), "gpu_idle_ms": ms(hi - lo - busy),
        "kernels": len(inside),
        "kernel_ms_by_category": {k: ms(v) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": {k: ms(v) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]},
        "longest_gaps": [{"ms": ms(g), "after": a[:160], "before": b[:160]} for g, a, b in sorted(gaps, reverse=True)[:top]],
        "gaps_over_20us_ms": ms(sum(g for g, _, _ in gaps if g > 20)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace")
    parser.add_argument("--boundary", default="multi_tensor_apply")
    parser.add_argument("--out")
    args = parser.parse_args()
    with (gzip.open if args.trace.endswith(".gz") else open)(args.trace, "rt") as fh:
        summary = summarize(json.load(fh), args.boundary)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
