"""Where one training step's GPU time goes, from a torch.profiler Chrome trace (CUDA activity).

    python scripts/trace_summary.py TRACE.json [--boundary adam] [--out summary.json]

The last complete step is the window between the ends of the last two runs of consecutive kernels
whose names contain --boundary (fused AdamW's multi_tensor_apply kernels, FusedOptimizerTensorListMetadata, end every step of hprune.distill). In it: the wall time, the time some
kernel ran (the union of kernel intervals), the idle time, kernel time by category, the longest
kernels and the longest idle gaps with the kernels on either side. Used by scale_distill.py --profile.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

# first match wins: (category, substrings of the lower-cased kernel name)
CATEGORIES = (
    ("optimizer", ("adam", "multi_tensor")),
    ("attention", ("fmha", "flash", "sdpa", "cudnn", "attention")),
    ("gemm", ("gemm", "xmma", "cutlass", "cublas", "sm90_", "nvjet", "splitk")),
    ("copy", ("memcpy", "memset", "copy")),
    ("inductor (fused pointwise / norm / reduction)", ("triton_",)),
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


def step_ends(spans: list[tuple[float, float, str]], boundary: str) -> list[float]:
    """Where each run of consecutive boundary kernels ends: one optimizer step launches several."""
    marks = [boundary.lower() in name.lower() for _, _, name in spans]
    return [spans[i][1] for i, mark in enumerate(marks) if mark and (i + 1 == len(spans) or not marks[i + 1])]


def summarize(trace: dict, boundary: str = "FusedOptimizer", top: int = 12) -> dict:
    spans = kernels(trace)
    ends = step_ends(spans, boundary)
    if len(ends) < 2:
        raise ValueError(f"fewer than two kernels named like '{boundary}' in the trace: no complete step")
    lo, hi = ends[-2], ends[-1]
    inside = [(s, e, n) for s, e, n in spans if e > lo and s < hi]
    busy, gaps = busy_and_gaps(inside, lo, hi)
    by_cat, by_name = defaultdict(float), defaultdict(float)
    for s, e, n in inside:
        d = min(e, hi) - max(s, lo)
        by_cat[category(n)] += d
        by_name[n[:120]] += d
    ms = lambda us: round(us / 1000, 3)  # noqa: E731
    return {
        "step_wall_ms": ms(hi - lo), "gpu_busy_ms": ms(busy), "gpu_idle_ms": ms(hi - lo - busy),
        "kernels": len(inside),
        "kernel_ms_by_category": {k: ms(v) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": {k: ms(v) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]},
        "longest_gaps": [{"ms": ms(g), "after": a[:100], "before": b[:100]} for g, a, b in sorted(gaps, reverse=True)[:top]],
        "gaps_over_20us_ms": ms(sum(g for g, _, _ in gaps if g > 20)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace")
    parser.add_argument("--boundary", default="FusedOptimizer")
    parser.add_argument("--out")
    args = parser.parse_args()
    with open(args.trace) as fh:
        summary = summarize(json.load(fh), args.boundary)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
