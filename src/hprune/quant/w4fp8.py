"""`w4fp8` backend: 4-bit weights in memory, FP8 compute (hprune's own kernel).

Weights: symmetric int4 (w = scale * (n - 8), n in 0..15), one bf16 scale per
output row and group of `group_size` inputs (128), or per row (group_size 0).
Activations: FP8 e4m3 with one scale per token row, quantized on the fly in
plain torch so that torch.compile fuses it into the preceding norm/GELU.
On CUDA, per-row scales (group_size 0) take the fast path: the int4 weight is
unpacked to FP8 by one bandwidth-bound Triton pass (w4fp8_unpack.py) and
multiplied by cuBLAS's row-wise scaled FP8 GEMM (torch._scaled_mm, fast
accumulation); groups of 128 take the fused Triton GEMM (w4fp8_kernel.py),
which also runs per row when `FAST_PATH` is set to "fused". Per-row layers
called with at most SKINNY_MAX_M token rows (AdaLN's modulation at M = batch)
skip the FP8 path: one Triton pass reads the int4 weight
and multiplies in the activations' dtype (w4_skinny.py, W4A16). Elsewhere a
torch reference with the same numerics runs (slow; for tests and CPU loading).
"""

from __future__ import annotations

import torch
import torch.nn as nn

TILE_K = 128
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


def supports(linear: nn.Linear) -> bool:
    # A layer left with no inputs by pruning (a FLUX proj_out whose branches are
    # all gone) stays a 16-bit bias-only layer.
    return linear.in_features > 0


def padded_k(in_features: int) -> int:
    """The stored input width: in_features rounded up to the 128-input tile.

    Real SD3/FLUX widths (2432, 3072, 9728, 12288, ...) are multiples of 128 and
    store exactly 4 bits (+ scales) per weight; narrower toy widths (the shapes
    teachers' 112 and 448) pad their weights and inputs with zeros, which leaves
    every product and every row's absmax scale unchanged.
    """
    return -(-in_features // TILE_K) * TILE_K


def pack_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, K] float -> (packed uint8 [N, K//2], bf16 scales [N, K//group] or [N])."""
    n, k = weight.shape
    w = weight.float()
    groups = w.view(n, k // group_size, group_size) if group_size else w.view(n, 1, k)
    scale = (groups.abs().amax(-1, keepdim=True) / 7.0).clamp_min(1e-12)
    scale = scale.to(torch.bfloat16).float()  # quantize against the scale we store
    codes = (groups / scale).round().clamp(-8, 7).view(n, k)
    scale = scale.squeeze(-1).to(torch.bfloat16)
    return pack_codes(codes), (scale if group_size else scale.squeeze(-1)).contiguous()


def row_scales(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] float -> the float32 values of pack_int4's per-row scales (absmax / 7, bf16-rounded), [N]."""
    return (weight.float().abs().amax(-1) / 7.0).clamp_min(1e-12).to(torch.bfloat16).float()


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Integer codes [N, K] in -8..7 (K a multiple of 128) -> packed uint8 [N, K//2]: per 128-input
    tile, the low nibbles hold its first 64 codes + 8 and the high nibbles its last 64."""
    n, k = codes.shape
    q = codes.add(8).to(torch.uint8).view(n, k // TILE_K, 2, TILE_K // 2)
    return (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(n, k // 2).contiguous()


def unpack_int4(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_int4, as float32 [N, K]."""
    n, half = packed.shape
    tiles = packed.view(n, half // (TILE_K // 2), 1, TILE_K // 2)
    q = torch.cat([tiles & 0xF, tiles >> 4], dim=2).reshape(n, half * 2).float() - 8.0
    groups = scale.shape[1] if scale.dim() == 2 else 1
    return (q.view(n, groups, -1) * scale.float().view(n, groups, 1)).view(n, half * 2)


def quantize_rows(x: torch.Tensor, group_size: int):
    """[M, K] -> (fp8 [M, K], row sums of the fp8 values per weight group, fp32 row scales [M])."""
    xf = x.float()
    scale = (xf.abs().amax(-1, keepdim=True) / FP8_MAX).clamp_min(1e-12)
    x8 = (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    groups = x.shape[1] // group_size if group_size else 1
    rowsum = x8.float().view(x.shape[0], groups, -1).sum(-1)
    return x8, rowsum.contiguous() if group_size else rowsum.view(-1), scale.view(-1)


def reference_matmul(x8, rowsum, x_scale, packed, w_scale, bias):
    """What the kernel computes, in float32 torch (CPU-safe)."""
    del rowsum  # the kernel needs it for the offset; here the weight is unpacked signed
    out = (x8.float() * x_scale[:, None]) @ unpack_int4(packed, w_scale).t()
    return out if bias is None else out + bias.float()


@torch.library.custom_op("hprune::w4fp8_mm", mutates_args=())
def w4fp8_mm(x8: torch.Tensor, rowsum: torch.Tensor, x_scale: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    if x8.is_cuda:
        from hprune.quant.w4fp8_kernel import w4fp8_matmul

        return w4fp8_matmul(x8, rowsum, x_scale, packed, w_scale, bias, out_dtype=out_dtype)
    return reference_matmul(x8, rowsum, x_scale, packed, w_scale, bias).to(out_dtype)


@w4fp8_mm.register_fake
def _(x8, rowsum, x_scale, packed, w_scale, bias, out_dtype):
    return x8.new_empty(x8.shape[0], packed.shape[0], dtype=out_dtype)


def unpack_fp8_reference(packed: torch.Tensor, w_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What w4fp8_unpack.unpack_fp8 computes: (e4m3 [N, K] of the codes n - 8, float32 [1, N])."""
    return unpack_int4(packed, torch.ones_like(w_scale)).to(FP8), w_scale.float().view(1, -1)


@torch.library.custom_op("hprune::w4_unpack_fp8", mutates_args=())
def w4_unpack_fp8(packed: torch.Tensor, w_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if packed.is_cuda:
        from hprune.quant.w4fp8_unpack import unpack_fp8

        return unpack_fp8(packed, w_scale)
    return unpack_fp8_reference(packed, w_scale)


@w4_unpack_fp8.register_fake
def _(packed, w_scale):
    n, half = packed.shape
    return packed.new_empty(n, half * 2, dtype=FP8), w_scale.new_empty(1, n, dtype=torch.float32)


# "cublas": unpack + torch._scaled_mm; "fused": the swapped Triton GEMM. Per-row scales only.
FAST_PATH = "cublas"


def takes_fast_path(x: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor) -> bool:
    # cuBLAS FP8 wants N a multiple of 16 (K always is: padded to a multiple of 128)
    return x.is_cuda and w_scale.dim() == 1 and packed.shape[0] % 16 == 0


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] -> (fp8 [M, K], float32 scales [M, 1]); plain torch so that compile fuses it."""
    xf = x.float()
    scale = (xf.abs().amax(-1, keepdim=True) / FP8_MAX).clamp_min(1e-12)
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def fast_linear(x2, packed, w_scale, bias):
    if FAST_PATH == "fused":
        x8, rowsum, x_scale = quantize_rows(x2, 0)
        return w4fp8_mm_swapped(x8, rowsum, x_scale, packed, w_scale, bias, x2.dtype)
    x8, x_scale = quantize_tokens(x2)
    w8, w_scale32 = w4_unpack_fp8(packed, w_scale)
    # cuBLAS adds a bias only into 16-bit outputs; a float32 model (the shapes teachers) adds its own
    fused = bias if x2.dtype != torch.float32 else None
    out = torch._scaled_mm(x8, w8.t(), scale_a=x_scale, scale_b=w_scale32, bias=fused, out_dtype=x2.dtype, use_fast_accum=True)
    return out if bias is None or fused is not None else out + bias


@torch.library.custom_op("hprune::w4fp8_mm_swapped", mutates_args=())
def w4fp8_mm_swapped(x8: torch.Tensor, rowsum: torch.Tensor, x_scale: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    from hprune.quant.w4fp8_kernel import w4fp8_matmul_swapped

    return w4fp8_matmul_swapped(x8, rowsum, x_scale, packed, w_scale, bias, out_dtype=out_dtype)


@w4fp8_mm_swapped.register_fake
def _(x8, rowsum, x_scale, packed, w_scale, bias, out_dtype):
    return x8.new_empty(x8.shape[0], packed.shape[0], dtype=out_dtype)


def skinny_reference(x: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """What w4_skinny.w4a16_skinny_mm computes, in float32 torch (CPU-safe): no activation quantization."""
    out = x.float() @ unpack_int4(packed, w_scale).t()
    return (out if bias is None else out + bias.float()).to(x.dtype)


@torch.library.custom_op("hprune::w4a16_skinny_mm", mutates_args=())
def w4a16_skinny_mm(x: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if x.is_cuda:
        from hprune.quant.w4_skinny import w4a16_skinny_mm as kernel

        return kernel(x, packed, w_scale, bias)
    return skinny_reference(x, packed, w_scale, bias)


@w4a16_skinny_mm.register_fake
def _(x, packed, w_scale, bias):
    return x.new_empty(x.shape[0], packed.shape[0])


# Token rows up to which a per-row layer reads its int4 weight once in the skinny W4A16 kernel
# instead of unpacking it for cuBLAS FP8: AdaLN's modulation at M = batch (x 2 with guidance). On an
# H200 (docs/benchmarks.md) the skinny kernel took 27-28 us at M = 1-8 for 2432 x 14592 against
# 32 us for unpack + cuBLAS, 31 us at M = 32 and 35 us at M = 64 against 31-32 us.
SKINNY_MAX_M = 16


def takes_skinny_path(x: torch.Tensor, w_scale: torch.Tensor) -> bool:
    # also on the CPU (its torch reference), so that a model computes the same there; GPUs without
    # FP8 keep dequantized_linear, which is the same W4A16 product
    return w_scale.dim() == 1 and x.shape[0] <= SKINNY_MAX_M and (FP8_COMPUTE or not x.is_cuda)


def fp8_compute(device_index: int) -> bool:
    """Whether the GPU has FP8 tensor cores (compute capability 8.9: Ada, Hopper and newer)."""
    return torch.cuda.get_device_capability(device_index) >= (8, 9)


# Set by the backend's check (run before quantizing and loading) from the GPU in use; a plain
# global rather than a call in forward, so that torch.compile guards on it instead of breaking.
FP8_COMPUTE = True


def dequantized_linear(x2, packed, w_scale, bias):
    """GPUs without FP8 (A100, V100): the int4 weight dequantized to the activations' dtype per
    call, a 16-bit GEMM (W4A16; correct, not fast: bnb-nf4 or torchao-int4 are faster there)."""
    weight = unpack_int4(packed, w_scale).to(x2.dtype)
    return torch.nn.functional.linear(x2, weight, None if bias is None else bias.to(x2.dtype))


def w4fp8_linear(x, packed, w_scale, bias, group_size):
    """Activation quantization stays in plain torch ops (outside the custom ops) so
    that torch.compile fuses it into whatever elementwise op produced x."""
    x2 = x.reshape(-1, x.shape[-1])
    if takes_skinny_path(x2, w_scale):
        out = w4a16_skinny_mm(x2, packed, w_scale, bias)
    elif x2.is_cuda and not FP8_COMPUTE:
        out = dequantized_linear(x2, packed, w_scale, bias)
    elif takes_fast_path(x2, packed, w_scale):
        out = fast_linear(x2, packed, w_scale, bias)
    else:
        x8, rowsum, x_scale = quantize_rows(x2, group_size)
        out = w4fp8_mm(x8, rowsum, x_scale, packed, w_scale, bias, x.dtype)
    return out.view(*x.shape[:-1], packed.shape[0])


def _pad_inputs(t: torch.Tensor, k: int) -> torch.Tensor:
    return t if t.shape[-1] == k else torch.nn.functional.pad(t, (0, k - t.shape[-1]))


class W4Fp8Linear(nn.Module):
    """Drop-in for nn.Linear holding packed int4 weights (buffers, so state_dict saves them)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int, device=None, dtype=torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        k = padded_k(in_features)
        scale_shape = (out_features, k // group_size) if group_size else (out_features,)
        self.register_buffer("qweight", torch.zeros(out_features, k // 2, dtype=torch.uint8, device=device))
        self.register_buffer("w_scale", torch.ones(scale_shape, dtype=torch.bfloat16, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int, codes: torch.Tensor | None = None) -> "W4Fp8Linear":
        """`codes` (int8 [out, in] in -8..7, per-row scales only): codes rounded elsewhere against
        row_scales(weight), e.g. by GPTQ (hprune.quant.gptq), stored instead of rounding to nearest;
        same scales, same format."""
        w = linear.weight.data
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size, device=w.device, dtype=w.dtype)
        k = padded_k(w.shape[1])
        if codes is None:
            mod.qweight, mod.w_scale = pack_int4(_pad_inputs(w, k), group_size)
        else:
            assert group_size == 0, "precomputed codes keep one scale per row"
            mod.qweight, mod.w_scale = pack_codes(_pad_inputs(codes, k)), row_scales(w).to(torch.bfloat16)
        if linear.bias is not None:
            mod.bias.data.copy_(linear.bias.data)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_inputs(x, self.qweight.shape[1] * 2)
        return w4fp8_linear(x, self.qweight, self.w_scale, self.bias, self.group_size)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"
