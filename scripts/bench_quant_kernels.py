"""Check and time the w4fp8 Triton GEMM against bf16 and FP8 rowwise cuBLAS, at the
SD3.5 Large / FLUX linear shapes (M = 4429 or 4608 tokens, 333/512 text, 1 for AdaLN).

    PYTHONPATH=src python scripts/bench_quant_kernels.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton

from hprune.quant import w4fp8_kernel as K
from hprune.quant.w4fp8 import pack_int4, quantize_rows, unpack_int4

SHAPES = [(4096, 2432, 2432), (4096, 2432, 9728), (4096, 9728, 2432), (4096, 3072, 12288), (4096, 15360, 3072),
          (333, 2432, 2432), (1, 2432, 14592)]
CONFIGS = [(128, 256, 8, 3), (128, 128, 8, 4), (128, 128, 4, 4), (256, 128, 8, 3), (64, 128, 4, 4), (64, 256, 4, 4)]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(m, k, n, group):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    packed, scale = pack_int4(w, group)
    x8, rowsum, xs = quantize_rows(x, group)
    ref = (x8.double() * xs.double()[:, None]) @ unpack_int4(packed, scale).double().t() + bias.double()
    out = K.w4fp8_matmul(x8, rowsum, xs, packed, scale, bias)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    return rel(out, ref), rel(out, F.linear(x, w, bias))


def bench(m, k, n):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    flops = 2 * m * k * n
    res = {"bf16": triton.testing.do_bench(lambda: F.linear(x, w), return_mode="median")}
    x8, xsc = x.to(torch.float8_e4m3fn), torch.ones(m, 1, device="cuda")
    w8, wsc = w.to(torch.float8_e4m3fn), torch.ones(1, n, device="cuda")
    res["fp8 rowwise cublas"] = triton.testing.do_bench(lambda: torch._scaled_mm(x8, w8.t(), xsc, wsc, out_dtype=torch.bfloat16), return_mode="median")
    for group in (128, 0):
        packed, scale = pack_int4(w, group)
        q8, rowsum, xs = quantize_rows(x, group)
        for cfg in CONFIGS if m > 512 else CONFIGS[-2:]:
            try:
                t = triton.testing.do_bench(lambda: K.w4fp8_matmul(q8, rowsum, xs, packed, scale, None, config=cfg), return_mode="median")
                res[f"w4fp8 g{group} {cfg}"] = t
            except Exception as err:  # a config that does not fit in shared memory
                res[f"w4fp8 g{group} {cfg}"] = float("nan")
                print("config failed", cfg, type(err).__name__, str(err)[:120])
        res[f"act quant g{group} (eager torch)"] = triton.testing.do_bench(lambda: quantize_rows(x, group), return_mode="median")
    print(f"\n## M={m} K={k} N={n}  ({flops / 1e9:.1f} GFLOP)")
    for name, ms in res.items():
        print(f"  {name:42s} {ms * 1000:9.1f} us  {flops / ms / 1e9:7.0f} TFLOP/s")


def main():
    torch.manual_seed(0)
    print("correctness (rel. error vs float64 of the quantized operands | vs bf16 unquantized):")
    for m, k, n in SHAPES + [(4429, 2432, 2432), (77, 256, 200)]:
        for group in (128, 0):
            print(f"  M={m} K={k} N={n} g{group}: {check(m, k, n, group)[0]:.2e} | {check(m, k, n, group)[1]:.2e}")
    for m, k, n in SHAPES:
        bench(m, k, n)


if __name__ == "__main__":
    main()
