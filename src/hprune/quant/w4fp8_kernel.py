"""Triton GEMM: 4-bit weights, FP8 activations, FP8 tensor-core MMAs (Hopper).

Why this shape. At 4k+ tokens a diffusion transformer's linears are
compute-bound, so a weight-only 4-bit kernel that dequantizes to bf16 is no
faster than bf16. Here the weights stay 4-bit in memory and the MMA runs in
FP8, which Hopper does at about 1.5x the bf16 rate.

The decode costs no conversion: a stored nibble n (0..15) *is* an e4m3 bit
pattern, and the 16 smallest e4m3 codes (subnormals and the first binade)
form the uniform grid n * 2**-9. So `nibble.to(float8e4nv, bitcast=True)`
already is the weight, up to the factor 512 and the offset 8 of symmetric
int4 (w = n - 8). The offset is removed in the epilogue with per-row sums of
the quantized activations:  x . (n - 8) = 512 * (x . fp8(n)) - 8 * sum(x).

Layout (see pack_int4): the weight is stored [N, K // 2] uint8; in every
K tile of 128, byte j holds k = j (low nibble) and k = 64 + j (high nibble),
so each tile is two plain [64]-wide halves and needs no interleave.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_K = 128
HALF_K = TILE_K // 2


@triton.jit
def _w4fp8_kernel(
    a_ptr, rowsum_ptr, a_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, c_ptr,
    M, N, K,
    HAS_BIAS: tl.constexpr, GROUPED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr,
):
    # Grouped launch order so neighbouring programs share activation tiles in L2.
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * num_n)
    first_m = group * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * num_n)) % size_m
    pid_n = (pid % (GROUP_M * num_n)) // size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = offs_m % M  # wrap instead of masking the loads; stores are masked
    cols = offs_n % N
    offs_h = tl.arange(0, 64)
    a_ptrs = a_ptr + rows[:, None] * K + offs_h[None, :]
    w_ptrs = w_ptr + cols[None, :] * (K // 2) + offs_h[:, None]
    num_tiles = K // 128

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(0, num_tiles):
        a_lo = tl.load(a_ptrs)
        a_hi = tl.load(a_ptrs + 64)
        packed = tl.load(w_ptrs)
        w_lo = (packed & 0xF).to(tl.uint8).to(tl.float8e4nv, bitcast=True)
        w_hi = (packed >> 4).to(tl.uint8).to(tl.float8e4nv, bitcast=True)
        if GROUPED:
            part = tl.dot(a_lo, w_lo)
            part = tl.dot(a_hi, w_hi, part)
            rsum = tl.load(rowsum_ptr + rows * num_tiles + t)
            scale = tl.load(w_scale_ptr + cols * num_tiles + t).to(tl.float32)
            acc += (part * 512.0 - 8.0 * rsum[:, None]) * scale[None, :]
        else:
            acc = tl.dot(a_lo, w_lo, acc)
            acc = tl.dot(a_hi, w_hi, acc)
        a_ptrs += 128
        w_ptrs += 64

    if not GROUPED:
        rsum = tl.load(rowsum_ptr + rows)
        scale = tl.load(w_scale_ptr + cols).to(tl.float32)
        acc = (acc * 512.0 - 8.0 * rsum[:, None]) * scale[None, :]
    acc = acc * tl.load(a_scale_ptr + rows)[:, None]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols).to(tl.float32)[None, :]
    c_ptrs = c_ptr + offs_m[:, None] * N + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _w4fp8_swapped_kernel(
    a_ptr, rowsum_ptr, a_scale_ptr, w_ptr, w_scale_ptr, bias_ptr, c_ptr,
    M, N, K,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, GROUP_N: tl.constexpr,
):
    """Per-row scales only. C^T = W @ A^T: the decoded weight is wgmma's A operand,
    which may stay in registers, so it skips the registers -> shared memory trip
    that the B operand of _w4fp8_kernel takes."""
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    num_m = tl.cdiv(M, BLOCK_M)
    group = pid // (GROUP_N * num_m)
    first_n = group * GROUP_N
    size_n = tl.minimum(num_n - first_n, GROUP_N)
    pid_n = first_n + (pid % (GROUP_N * num_m)) % size_n
    pid_m = (pid % (GROUP_N * num_m)) // size_n

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = offs_n % N
    rows = offs_m % M
    offs_h = tl.arange(0, 64)
    w_ptrs = w_ptr + cols[:, None] * (K // 2) + offs_h[None, :]
    a_ptrs = a_ptr + rows[None, :] * K + offs_h[:, None]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for _ in range(0, K // 128):
        packed = tl.load(w_ptrs)
        w_lo = (packed & 0xF).to(tl.uint8).to(tl.float8e4nv, bitcast=True)
        w_hi = (packed >> 4).to(tl.uint8).to(tl.float8e4nv, bitcast=True)
        acc = tl.dot(w_lo, tl.load(a_ptrs), acc)
        acc = tl.dot(w_hi, tl.load(a_ptrs + 64), acc)
        w_ptrs += 64
        a_ptrs += 128

    rsum = tl.load(rowsum_ptr + rows)
    w_scale = tl.load(w_scale_ptr + cols).to(tl.float32)
    acc = (acc * 512.0 - 8.0 * rsum[None, :]) * w_scale[:, None] * tl.load(a_scale_ptr + rows)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols).to(tl.float32)[:, None]
    out = tl.trans(acc.to(c_ptr.dtype.element_ty))
    c_ptrs = c_ptr + offs_m[:, None] * N + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(c_ptrs, out, mask=mask)


# (BLOCK_N, BLOCK_M, num_warps, num_stages) for the swapped kernel, the one its GPU tests check;
# (128, 256, 8, 3) timed fastest at 5 of 7 model shapes on one H200 (scripts/bench_quant_kernels.py).
SWAPPED_CONFIG = (128, 128, 4, 4)


def w4fp8_matmul_swapped(a_fp8, rowsum, a_scale, w_packed, w_scale, bias, out_dtype=torch.bfloat16, config=None):
    """Same result as w4fp8_matmul for per-row scales (w_scale [N])."""
    m, k = a_fp8.shape
    n = w_packed.shape[0]
    block_n, block_m, warps, stages = config or SWAPPED_CONFIG
    out = torch.empty((m, n), device=a_fp8.device, dtype=out_dtype)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _w4fp8_swapped_kernel[grid](
        a_fp8, rowsum, a_scale, w_packed, w_scale, bias if bias is not None else w_scale, out,
        m, n, k,
        HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_M=block_m, GROUP_N=8, num_warps=warps, num_stages=stages,
    )
    return out


# (BLOCK_M, BLOCK_N, num_warps, num_stages), the fastest of six in
# scripts/bench_quant_kernels.py on one H100 (docs/benchmarks.md, "Kernel").
CONFIGS = {("large", False): (128, 128, 4, 4), ("large", True): (64, 128, 4, 4), ("small", False): (64, 128, 4, 4), ("small", True): (64, 128, 4, 4)}


def pick_config(m: int, grouped: bool) -> tuple[int, int, int, int]:
    return CONFIGS[("large" if m >= 512 else "small", grouped)]


def w4fp8_matmul(a_fp8, rowsum, a_scale, w_packed, w_scale, bias, out_dtype=torch.bfloat16, config=None):
    """C[M, N] = dequant(a) @ dequant(w).T + bias; shapes as in pack_int4 / quantize_rows."""
    m, k = a_fp8.shape
    n = w_packed.shape[0]
    grouped = w_scale.dim() == 2 and w_scale.shape[1] > 1
    block_m, block_n, warps, stages = config or pick_config(m, grouped)
    out = torch.empty((m, n), device=a_fp8.device, dtype=out_dtype)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _w4fp8_kernel[grid](
        a_fp8, rowsum, a_scale, w_packed, w_scale, bias if bias is not None else w_scale, out,
        m, n, k,
        HAS_BIAS=bias is not None, GROUPED=grouped,
        BLOCK_M=block_m, BLOCK_N=block_n, GROUP_M=8, num_warps=warps, num_stages=stages,
    )
    return out
