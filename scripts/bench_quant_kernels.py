"""Check and time the 4-bit -> FP8 GEMM paths against cuBLAS at the SD3.5 Large / FLUX linear shapes.

    PYTHONPATH=src python scripts/bench_quant_kernels.py [--out kernels.json]

Paths, all per-row weight scales unless named g128:
  fp8 cublas        torch._scaled_mm on FP8 weights already in memory (row-wise scales,
                    fast accumulation): the reference the 4-bit paths are held to
  unpack            w4fp8_unpack.unpack_fp8 alone (int4 -> e4m3 + float32 scales)
  w4 unpack+cublas  the fast path hprune runs: unpack, then the same _scaled_mm
  w4 fused          the fused Triton GEMM (w4fp8_kernel), weight as the B operand
  w4 swapped        the fused Triton GEMM with the weight as the A operand (best config)
  w4 skinny         M <= 512 only: the W4A16 kernel for few token rows (w4_skinny, autotuned;
                    bf16 activations, no quantization): what hprune runs up to SKINNY_MAX_M rows
Activation quantization is left out of every row (compiled, it fuses into the op before).
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
import triton

from hprune.quant import w4fp8_kernel as K
from hprune.quant.w4fp8 import fast_linear, pack_int4, quantize_rows, quantize_tokens, unpack_int4
from hprune.quant.w4_skinny import w4a16_skinny_mm
from hprune.quant.w4fp8_unpack import unpack_fp8

SD, FLUX = [(2432, 2432), (2432, 9728), (9728, 2432)], [(3072, 3072), (3072, 12288), (12288, 3072), (15360, 3072)]
SHAPES = ([(4429, k, n) for k, n in SD] + [(4608, k, n) for k, n in FLUX]
          + [(333, 2432, 2432), (512, 3072, 3072), (1, 2432, 14592), (1, 3072, 18432)]
          + [(m, 2432, 14592) for m in (2, 8, 32, 64, 128)] + [(64, 2432, 2432), (128, 3072, 3072)])
SKINNY_UP_TO = 512
SWAPPED = [(128, 128, 4, 4), (128, 256, 8, 3), (256, 128, 8, 3), (64, 256, 4, 4)]
FUSED = [(128, 128, 4, 4), (128, 256, 8, 3)]


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(m, k, n):
    """Relative error of each path against float64 over the same quantized operands."""
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    packed, scale = pack_int4(torch.randn(n, k, device="cuda") * 0.02, 0)
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    w = unpack_int4(packed, scale).double()
    x8, xs = quantize_tokens(x)
    ref_tok = (x8.double() * xs.double()) @ w.t() + bias.double()
    q8, rowsum, qs = quantize_rows(x, 0)
    ref_rows = (q8.double() * qs.double()[:, None]) @ w.t() + bias.double()
    paths = {"w4 unpack+cublas": (lambda: fast_linear(x, packed, scale, bias), ref_tok),
             "w4 fused": (lambda: K.w4fp8_matmul(q8, rowsum, qs, packed, scale, bias), ref_rows),
             "w4 swapped": (lambda: K.w4fp8_matmul_swapped(q8, rowsum, qs, packed, scale, bias), ref_rows),
             "w4 skinny": (lambda: w4a16_skinny_mm(x, packed, scale, bias), x.double() @ w.t() + bias.double())}
    out = {}
    for name, (fn, ref) in paths.items():
        try:
            out[name] = rel(fn(), ref)
        except Exception as err:  # report and go on: one broken path must not hide the others
            print("FAILED", name, type(err).__name__, str(err)[:300])
            out[name] = float("nan")
    w8, s32 = unpack_fp8(packed, scale)
    out["unpack exact"] = float(torch.equal(w8.float() * s32.view(-1, 1), unpack_int4(packed, scale)))
    return out


def best(fn, configs):
    times = {}
    for cfg in configs:
        try:
            times[cfg] = triton.testing.do_bench(lambda: fn(cfg), warmup=10, rep=40, return_mode="median")
        except Exception as err:  # a config that does not fit in shared memory
            print("config failed", cfg, type(err).__name__, str(err)[:100])
    if not times:
        return float("nan"), None
    cfg = min(times, key=times.get)
    return times[cfg], cfg


def bench(m, k, n):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    t = lambda fn: triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")  # noqa: E731
    packed, scale = pack_int4(w, 0)
    x8, xs = quantize_tokens(x)
    w8, ws = unpack_fp8(packed, scale)
    q8, rowsum, qs = quantize_rows(x, 0)
    res = {"bf16 cublas": t(lambda: F.linear(x, w)),
           "fp8 cublas": t(lambda: torch._scaled_mm(x8, w8.t(), xs, ws, out_dtype=torch.bfloat16, use_fast_accum=True)),
           "unpack": t(lambda: unpack_fp8(packed, scale))}
    res["w4 unpack+cublas"] = t(lambda: _unpack_mm(x8, xs, packed, scale))
    configs = {"w4 fused": FUSED, "w4 swapped": SWAPPED} if m >= 4096 else {"w4 fused": FUSED[:1], "w4 swapped": SWAPPED[:1]}
    configs["w4 fused"] = [(64, 128, 4, 4)] if m <= 512 else configs["w4 fused"]
    cfgs = {}
    res["w4 fused"], cfgs["w4 fused"] = best(lambda c: K.w4fp8_matmul(q8, rowsum, qs, packed, scale, None, config=c), configs["w4 fused"])
    res["w4 swapped"], cfgs["w4 swapped"] = best(lambda c: K.w4fp8_matmul_swapped(q8, rowsum, qs, packed, scale, None, config=c), configs["w4 swapped"])
    res["w4 skinny"] = t(lambda: w4a16_skinny_mm(x, packed, scale, None)) if m <= SKINNY_UP_TO else float("nan")
    return {"m": m, "k": k, "n": n, "us": {name: round(ms * 1000, 1) for name, ms in res.items()}, "configs": cfgs}


def _unpack_mm(x8, xs, packed, scale):
    w8, ws = unpack_fp8(packed, scale)
    return torch._scaled_mm(x8, w8.t(), xs, ws, out_dtype=torch.bfloat16, use_fast_accum=True)


def table(rows):
    lines = ["| M x K x N | bf16 | fp8 cuBLAS | unpack | w4 unpack+cuBLAS | w4 fused | w4 swapped | w4 skinny | best w4 / fp8 cuBLAS |",
             "|" + " --- |" * 9]
    for r in rows:
        us, flops = r["us"], 2 * r["m"] * r["k"] * r["n"]
        cell = lambda name: f"{us[name]:.1f} us ({flops / us[name] / 1e6:.0f})"  # noqa: E731
        top = min(v for v in (us["w4 unpack+cublas"], us["w4 fused"], us["w4 swapped"], us["w4 skinny"]) if v == v)
        lines.append(f"| {r['m']} x {r['k']} x {r['n']} | {cell('bf16 cublas')} | {cell('fp8 cublas')} | {us['unpack']:.1f} us | "
                     f"{cell('w4 unpack+cublas')} | {cell('w4 fused')} | {cell('w4 swapped')} | {cell('w4 skinny')} | "
                     f"{us['fp8 cublas'] / top:.0%} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    checks = {f"{m}x{k}x{n}": check(m, k, n) for m, k, n in [(4429, 2432, 2432), (4608, 15360, 3072), (333, 2432, 9728), (1, 2432, 14592), (77, 256, 208)]}
    print("rel. error vs float64 over the same quantized operands (unpack exact: 1.0 = bit-exact):")
    for shape, errs in checks.items():
        print(f"  {shape}: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))
    rows = []
    for m, k, n in SHAPES:
        rows.append(bench(m, k, n))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}; us (TFLOP/s)\n")
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
                       "checks": checks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
