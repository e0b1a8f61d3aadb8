import pytest
import torch

from hprune.quant.w4fp8 import W4Fp8Linear, pack_int4, quantize_rows, reference_matmul, unpack_int4


def test_a_nibble_is_the_fp8_code_of_n_times_2_pow_minus_9():
    # the kernel's decode is a bitcast; it is only right if this holds
    codes = torch.arange(16, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    assert torch.equal(codes * 512, torch.arange(16).float())


@pytest.mark.parametrize("group", [128, 0])
def test_pack_unpack_is_the_int4_rounding_of_the_weight(group):
    w = torch.randn(96, 256)
    packed, scale = pack_int4(w, group)
    assert packed.shape == (96, 128) and packed.dtype == torch.uint8
    back = unpack_int4(packed, scale)
    step = scale.float().view(96, -1).repeat_interleave(256 // scale.view(96, -1).shape[1], dim=1)
    assert ((back - w).abs() <= step * 0.5 + 1e-3).all()  # within half a quantization step
    naive = (w / w.abs().max() * 7).round() * w.abs().max() / 7  # one scale for the whole tensor
    assert (back - w).norm() < (naive - w).norm()


@pytest.mark.parametrize("group", [128, 0])
def test_offset_form_of_the_kernel_equals_the_reference(group):
    # emulates 512 * (x . fp8(n)) - 8 * rowsum(x), what the Triton kernel computes
    torch.manual_seed(1)
    x, w = torch.randn(5, 256), torch.randn(64, 256)
    packed, scale = pack_int4(w, group)
    x8, rowsum, xs = quantize_rows(x, group)
    n = torch.cat([packed.view(64, 2, 1, 64) & 15, packed.view(64, 2, 1, 64) >> 4], 2).reshape(64, 256)
    g = 2 if group else 1
    fp8_n = n.view(torch.float8_e4m3fn).float()
    partial = (x8.float().view(5, 1, g, -1) * fp8_n.view(1, 64, g, -1)).sum(-1)
    out = ((partial * 512 - 8 * rowsum.view(5, 1, g)) * scale.float().view(1, 64, g)).sum(-1) * xs[:, None]
    ref = reference_matmul(x8, rowsum, xs, packed, scale, None)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_is_close_to_bf16_and_keeps_shape():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64).to(torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, 128)
    x = torch.randn(2, 3, 256, dtype=torch.bfloat16)
    out, ref = q(x), lin(x)
    assert out.shape == ref.shape and out.dtype == torch.bfloat16
    assert ((out.float() - ref.float()).norm() / ref.float().norm()) < 0.15


@pytest.mark.gpu
@pytest.mark.parametrize("group", [128, 0])
@pytest.mark.parametrize("m,k,n", [(4429, 2432, 2432), (1, 2432, 14592), (77, 256, 200)])
def test_triton_kernel_matches_the_reference(m, k, n, group):
    from hprune.quant.w4fp8_kernel import w4fp8_matmul

    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda") * 0.02
    bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    packed, scale = pack_int4(w, group)
    x8, rowsum, xs = quantize_rows(x, group)
    ref = reference_matmul(x8, rowsum, xs, packed, scale, bias.float()).double()  # float32 torch
    out = w4fp8_matmul(x8, rowsum, xs, packed, scale, bias)
    assert torch.isfinite(out).all()
    assert ((out.double() - ref).norm() / ref.norm()) < (3e-3 if group else 2e-2)  # bf16 output rounding
