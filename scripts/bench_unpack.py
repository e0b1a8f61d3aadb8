"""Time variants of the int4 -> FP8 unpack kernel (w4fp8_unpack.py) and check each is bit-exact.

    PYTHONPATH=src python scripts/bench_unpack.py

Bytes moved: N*K/2 read + N*K written (+ scales); GB/s below count both.
"""

from __future__ import annotations

import torch
import triton

from hprune.quant.w4fp8 import unpack_fp8_reference
from hprune.quant.w4fp8_unpack import unpack_fp8

SHAPES = [(2432, 2432), (9728, 2432), (12288, 3072), (14592, 2432)]  # (N, K)
CONFIGS = [(b, f, w) for b in (16, 32, 64, 128) for f in (False, True) for w in (4,)] + [(64, True, 8), (128, True, 8)]


def main():
    rows = []
    for n, k in SHAPES:
        packed = torch.randint(0, 256, (n, k // 2), device="cuda", dtype=torch.uint8)
        scale = torch.rand(n, device="cuda").to(torch.bfloat16)
        ref = unpack_fp8_reference(packed, scale)[0].view(torch.uint8)
        cells = []
        for cfg in CONFIGS:
            exact = torch.equal(unpack_fp8(packed, scale, cfg)[0].view(torch.uint8), ref)
            us = triton.testing.do_bench(lambda: unpack_fp8(packed, scale, cfg), warmup=5, rep=20, return_mode="median") * 1000
            cells.append(f"{us:.1f}{'' if exact else ' WRONG'}")
        rows.append(f"| {n} x {k} ({n * k * 1.5 / 1e6:.1f} MB) | " + " | ".join(cells) + " |")
    print("| N x K | " + " | ".join(f"B{b} {'fp16' if f else 'fp32'} w{w}" for b, f, w in CONFIGS) + " |")
    print("|" + " --- |" * (len(CONFIGS) + 1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
