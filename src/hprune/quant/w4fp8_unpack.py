"""Triton kernel: int4 weights (pack_int4's layout) -> FP8 e4m3 weights for cuBLAS.

Why a separate pass instead of a fused GEMM. At 4k+ tokens the FP8 GEMM reads
each weight once per 128-256 tokens; unpacking the whole weight first costs
one read of K/2 bytes and one write of K bytes per row, a few microseconds at
HBM bandwidth against hundreds for the GEMM, and leaves the GEMM to cuBLAS's
row-wise scaled FP8 kernel (torch._scaled_mm), which no Triton kernel of ours
matched (docs/benchmarks.md, "The GEMM against cuBLAS FP8": 91-101% of
cuBLAS FP8 at 4.4k-4.6k tokens for this path, 42-60% for the fused Triton kernels). Only per-row weight scales fit that
GEMM; the int4 codes n - 8 (-8..7) are exact in e4m3, so the FP8 weight
equals the stored one and the row scale goes to cuBLAS's scale_b.

The same launch turns the bf16 row scales into the float32 vector cuBLAS takes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

HALF_K = 64  # bytes per 128-input tile: low nibbles are k = 0..63, high nibbles k = 64..127
BLOCK_ROWS = 128  # 64-byte tile rows per program: 8 KiB in, 16 KiB out


@triton.jit
def _unpack_kernel(w_ptr, out_ptr, scale_ptr, scale_out_ptr, n_tiles, n_rows, BLOCK: tl.constexpr, SCALE_BLOCK: tl.constexpr,
                   VIA_FP16: tl.constexpr):
    pid = tl.program_id(0)
    tiles = pid * BLOCK + tl.arange(0, BLOCK)
    h = tl.arange(0, 64)
    mask = tiles[:, None] < n_tiles
    packed = tl.load(w_ptr + tiles[:, None] * 64 + h[None, :], mask=mask, other=0)
    if VIA_FP16:  # int8 -> fp16 -> e4m3 converts two values per instruction
        lo = ((packed & 0xF).to(tl.int8) - 8).to(tl.float16).to(tl.float8e4nv)
        hi = ((packed >> 4).to(tl.int8) - 8).to(tl.float16).to(tl.float8e4nv)
    else:
        wide = packed.to(tl.int32)
        lo = ((wide & 0xF) - 8).to(tl.float32).to(tl.float8e4nv)
        hi = ((wide >> 4) - 8).to(tl.float32).to(tl.float8e4nv)
    base = out_ptr + tiles[:, None] * 128 + h[None, :]
    tl.store(base, lo, mask=mask)
    tl.store(base + 64, hi, mask=mask)
    rows = pid * SCALE_BLOCK + tl.arange(0, SCALE_BLOCK)
    keep = rows < n_rows
    tl.store(scale_out_ptr + rows, tl.load(scale_ptr + rows, mask=keep).to(tl.float32), mask=keep)


# (BLOCK rows, VIA_FP16, num_warps); scripts/bench_unpack.py times the alternatives.
CONFIG = (BLOCK_ROWS, False, 4)


def unpack_fp8(packed: torch.Tensor, w_scale: torch.Tensor, config=None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, K // 2] + bf16 [N] -> (e4m3 [N, K] holding n - 8, float32 [1, N])."""
    block, via_fp16, warps = config or CONFIG
    n, half = packed.shape
    n_tiles = n * half // HALF_K
    grid = triton.cdiv(n_tiles, block)
    scale_block = triton.next_power_of_2(triton.cdiv(n, grid))
    out = torch.empty((n, half * 2), device=packed.device, dtype=torch.float8_e4m3fn)
    scale = torch.empty((1, n), device=packed.device, dtype=torch.float32)
    _unpack_kernel[(grid,)](packed, out, w_scale, scale, n_tiles, n, BLOCK=block, SCALE_BLOCK=scale_block, VIA_FP16=via_fp16, num_warps=warps)
    return out, scale
