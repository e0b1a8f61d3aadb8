"""Triton kernel: 4-bit weights times a few token rows (a skinny GEMM), in 16-bit (W4A16).

Why a second path. The FP8 path (unpack, then cuBLAS) pays one pass over the whole
weight per call; at 4k tokens that is a few percent of the GEMM, but the AdaLN
modulation runs at M = batch (one row per image: 2432 -> 14,592 in SD3.5 Large,
3072 -> 18,432 in FLUX.1, two such layers per joint block) and the text stream at a
few hundred rows, where the unpack is as long as the GEMM itself (docs/benchmarks.md:
76.5 us against bf16's 28.2 us at M = 1). At these shapes the work is reading the
weight, so this kernel reads the packed int4 bytes once, decodes them in registers
and multiplies in the activations' own dtype (no activation quantization), which
is both faster and closer to the 16-bit layer than FP8.

    out[m, n] = w_scale[n] * sum_k x[m, k] * (code[n, k] - 8) + bias[n]

Layout (pack_int4): the weight is [N, K // 2] uint8; in every K tile of 128, byte j
holds k = j (low nibble) and k = 64 + j (high nibble). Per-row scales only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_K = 128


def _configs():
    return [triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bn in (16, 32, 64) for w in (2, 4) for s in (3, 4)]


@triton.autotune(configs=_configs(), key=["N", "K", "BLOCK_M"])
@triton.jit
def _skinny_kernel(x_ptr, w_ptr, scale_ptr, bias_ptr, out_ptr, M, N, K,
                   HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    wrapped = cols % N  # loads wrap instead of masking; stores are masked
    h = tl.arange(0, 64)
    x_ptrs = x_ptr + rows[:, None] * K + h[None, :]
    w_ptrs = w_ptr + wrapped[:, None] * (K // 2) + h[None, :]
    in_rows = rows[:, None] < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, K // 128):
        x_lo = tl.load(x_ptrs, mask=in_rows, other=0.0)
        x_hi = tl.load(x_ptrs + 64, mask=in_rows, other=0.0)
        packed = tl.load(w_ptrs).to(tl.int32)
        w_lo = ((packed & 0xF) - 8).to(x_lo.dtype)
        w_hi = ((packed >> 4) - 8).to(x_lo.dtype)
        acc += tl.dot(x_lo, tl.trans(w_lo))
        acc += tl.dot(x_hi, tl.trans(w_hi))
        x_ptrs += 128
        w_ptrs += 64
    acc *= tl.load(scale_ptr + wrapped).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + wrapped).to(tl.float32)[None, :]
    out_ptrs = out_ptr + rows[:, None] * N + cols[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=in_rows & (cols[None, :] < N))


def block_m(m: int) -> int:
    """Rows per program: tl.dot needs at least 16; more rows share each weight read."""
    return min(64, max(16, triton.next_power_of_2(m)))


def w4a16_skinny_mm(x: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [M, K] (bf16, fp16 or float32; K a multiple of 128) times the int4 weight (uint8 [N, K // 2],
    bf16 row scales [N]) -> [M, N] in x's dtype, plus bias [N]. float32 inputs multiply in TF32."""
    m, k = x.shape
    n = packed.shape[0]
    x = x.contiguous()
    out = torch.empty((m, n), device=x.device, dtype=x.dtype)
    bm = block_m(m)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, bm))  # noqa: E731
    _skinny_kernel[grid](x, packed, w_scale, bias if bias is not None else w_scale, out, m, n, k,
                         HAS_BIAS=bias is not None, BLOCK_M=bm)
    return out
