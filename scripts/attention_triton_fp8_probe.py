"""Whether an FP8 attention forward written in Triton, with a bf16 output, beats cuDNN's bf16 attention
at SD3.5 Large's and FLUX.1's shapes on Hopper, and at what error. An experiment for issue 18, item 2
(an optional 8-bit attention behind a flag): cuDNN's own FP8 graph gives only an FP8 output on sm90
(6-10% error, scripts/attention_fp8_probe.py), so this is the remaining way to FP8 tensor cores.

The kernel (FlashAttention-2's online softmax, Dao 2023, Algorithm 1; one program per BLOCK_M queries
and (batch, head)):
  S = (q8 @ k8^T) * s_q[m] * s_k[n]    q8, k8: E4M3 with one scale per token (amax / 448), the softmax
                                       scale and log2(e) folded into s_q; k smoothed first (its mean
                                       over tokens removed, which softmax does not see: SageAttention,
                                       Zhang et al. 2025, Section 4.2)
  O += P8 @ v8                         P in E4M3 after x256 (P <= 1: entries above 6e-5 stay normal);
                                       v8: E4M3 with one scale per channel, stored [D, N] since FP8 wgmma
                                       reads its B operand K-major
  or O += P_bf16 @ v_bf16              (PV in bf16: only QK^T in 8 bits, like SageAttention 1)
  out = O * s_v[d] / (256 * l)         bf16, written [B, N, H, D]: the layout the projection after
                                       attention reads, so no transpose copy follows.
q, k, v are quantized (and padded to 128 tokens) by one torch.compile'd function: "quant_us".

Candidates (median us of triton.testing.do_bench; rel_err against float64 as in attention_fp8_probe):
sdpa_cudnn_bf16 (what hprune runs), and triton_qk_{fp8,int8}_pv_{fp8,bf16} (QK^T in FP8 or INT8 with one
scale per token, PV as above or in bf16) under six tile configurations each, the fastest first. One JSON line per (arch, batch, candidate,
configuration) to --out. The kernel's numerics were checked on CPU with Triton's interpreter
(TRITON_INTERPRET=1, float16 inputs: the interpreter mishandles bfloat16) against the float64 reference.

    python3 scripts/attention_triton_fp8_probe.py --out $OUT/attention_triton_fp8.jsonl
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from attention_fp8_probe import SHAPES, draw_cases, measure_sdpa, median_us, one_line, rel_err, write_row
from torch.nn.attention import SDPBackend

E4M3_MAX = 448.0
PAD = 128
# (BLOCK_M, BLOCK_N, num_warps, num_stages)
CONFIGS = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 3), (128, 64, 4, 4)]


@triton.jit
def _tile(acc, l_i, m_i, q, qs, k_ptrs, ks_ptrs, v_ptrs, start, N,
          BLOCK_N: tl.constexpr, MASK: tl.constexpr, PV_FP8: tl.constexpr):
    s = tl.dot(q, tl.load(k_ptrs)).to(tl.float32) * tl.load(ks_ptrs)[None, :]  # int8 operands give int32
    if MASK:
        cols = start + tl.arange(0, BLOCK_N)
        s = tl.where(cols[None, :] < N, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qs)  # s_q > 0, so max(s * s_q) = max(s) * s_q
    p = tl.math.exp2(s * qs[:, None] - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    v = tl.load(v_ptrs)
    if PV_FP8:
        acc = tl.dot((p * 256.0).to(tl.float8e4nv), v, acc)
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, l_i, m_new


@triton.jit
def _fp8_attention_kernel(q_ptr, qs_ptr, k_ptr, ks_ptr, v_ptr, vs_ptr, o_ptr, N, NPAD, H,
                          D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PV_FP8: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    q = tl.load(q_ptr + bh * NPAD * D + offs_m[:, None] * D + offs_d[None, :])
    qs = tl.load(qs_ptr + bh * NPAD + offs_m)
    k_ptrs = k_ptr + bh * NPAD * D + offs_n[None, :] * D + offs_d[:, None]  # [D, BLOCK_N], D contiguous
    ks_ptrs = ks_ptr + bh * NPAD + offs_n
    if PV_FP8:  # v stored [D, NPAD]: the [BLOCK_N, D] tile is N-contiguous, K-major for wgmma
        v_ptrs = v_ptr + bh * D * NPAD + offs_n[:, None] + offs_d[None, :] * NPAD
        v_step = BLOCK_N
    else:
        v_ptrs = v_ptr + bh * NPAD * D + offs_n[:, None] * D + offs_d[None, :]
        v_step = BLOCK_N * D
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, D), tl.float32)
    n_full = (N // BLOCK_N) * BLOCK_N
    for start in range(0, n_full, BLOCK_N):
        acc, l_i, m_i = _tile(acc, l_i, m_i, q, qs, k_ptrs, ks_ptrs, v_ptrs, start, N, BLOCK_N, False, PV_FP8)
        k_ptrs += BLOCK_N * D
        ks_ptrs += BLOCK_N
        v_ptrs += v_step
    if n_full < N:
        acc, l_i, m_i = _tile(acc, l_i, m_i, q, qs, k_ptrs, ks_ptrs, v_ptrs, n_full, N, BLOCK_N, True, PV_FP8)
    vs = tl.load(vs_ptr + bh * D + offs_d)
    if PV_FP8:
        l_i = l_i * 256.0
    out = acc * vs[None, :] / l_i[:, None]
    b = bh // H
    h = bh % H
    o_ptrs = o_ptr + (b * N + offs_m[:, None]) * H * D + h * D + offs_d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=offs_m[:, None] < N)


def _per_token(t: torch.Tensor, npad: int, qk_int8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    t = F.pad(t.float(), (0, 0, 0, npad - t.shape[-2]))
    amax = t.abs().amax(-1).clamp(min=1e-6)
    if qk_int8:
        return (t * (127.0 / amax)[..., None]).round().to(torch.int8), amax / 127.0
    return (t * (E4M3_MAX / amax)[..., None]).to(torch.float8_e4m3fn), amax / E4M3_MAX


def quantize_qkv(q, k, v, pv_fp8: bool, qk_int8: bool = False):
    """[B, H, N, D] bf16 -> the kernel's operands, padded to a multiple of 128 tokens."""
    n, d = q.shape[-2:]
    npad = -(-n // PAD) * PAD
    q8, qs = _per_token(q, npad, qk_int8)
    k8, ks = _per_token(k.float() - k.float().mean(-2, keepdim=True), npad, qk_int8)
    qs = qs * (d**-0.5 * math.log2(math.e))
    if pv_fp8:
        vamax = v.float().abs().amax(-2).clamp(min=1e-6)  # [B, H, D]
        vt = F.pad((v.float() * (E4M3_MAX / vamax)[..., None, :]).transpose(-1, -2), (0, npad - n))
        return q8, qs, k8, ks, vt.to(torch.float8_e4m3fn).contiguous(), vamax / E4M3_MAX
    vp = F.pad(v, (0, 0, 0, npad - n)).contiguous()
    return q8, qs, k8, ks, vp, torch.ones(v.shape[:2] + v.shape[-1:], device=v.device)


def run_kernel(ops, n: int, h: int, config, pv_fp8: bool) -> torch.Tensor:
    q8, qs, k8, ks, vv, vs = ops
    b, _, npad, d = q8.shape
    block_m, block_n, warps, stages = config
    out = torch.empty((b, n, h, d), device=q8.device, dtype=torch.bfloat16)
    grid = (npad // block_m, b * h)
    _fp8_attention_kernel[grid](q8, qs, k8, ks, vv, vs, out, n, npad, h, D=d, BLOCK_M=block_m, BLOCK_N=block_n,
                                PV_FP8=pv_fp8, num_warps=warps, num_stages=stages)
    return out.transpose(1, 2)  # [B, H, N, D] view


def measure_triton(cases, pv_fp8: bool, qk_int8: bool) -> list[dict]:
    quant = torch.compile(partial(quantize_qkv, qk_int8=qk_int8), dynamic=False)
    (q, k, v), _ = cases[0]
    n, h = q.shape[2], q.shape[1]
    rows = []
    for config in CONFIGS:
        try:
            errs = [rel_err(run_kernel(quant(*x, pv_fp8), n, h, config, pv_fp8), ref) for x, ref in cases]
            ops = quant(q, k, v, pv_fp8)
            us = median_us(lambda: run_kernel(ops, n, h, config, pv_fp8))
            rows.append({"config": list(config), "us": us, "rel_err": errs[0], "rel_err_peaky": errs[1]})
        except Exception as err:  # a tile configuration that does not compile or fit: recorded
            rows.append({"config": list(config), "error": one_line(err)})
    quant_us = median_us(lambda: quant(q, k, v, pv_fp8))
    for row in rows:
        row["quant_us"] = quant_us
    return sorted(rows, key=lambda r: r.get("us", float("inf")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", default="1")
    args = parser.parse_args()
    env = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    for arch, (h, n, d) in SHAPES.items():
        for batch in map(int, args.batches.split(",")):
            cases = draw_cases(batch, h, n, d)
            flops = 4 * batch * h * n * n * d
            found = [("sdpa_cudnn_bf16", measure_sdpa(SDPBackend.CUDNN_ATTENTION, cases))]
            for qk_int8, pv_fp8 in ((False, True), (True, True), (True, False), (False, False)):
                name = f"triton_qk_{'int8' if qk_int8 else 'fp8'}_pv_{'fp8' if pv_fp8 else 'bf16'}"
                found += [(name, r) for r in measure_triton(cases, pv_fp8, qk_int8)]
            for name, row in found:
                if "us" in row:
                    row["tflops"] = round(flops / row["us"] / 1e6, 1)
                write_row(args.out, {"arch": arch, "batch": batch, "shape": [batch, h, n, d], "candidate": name, **row, **env})
            del cases
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
