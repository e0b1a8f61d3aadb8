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


def test_unpacked_fp8_weight_times_row_scale_is_the_int4_weight():
    # the cuBLAS path multiplies e4m3 codes n - 8 by the row scale: exact for int4
    from hprune.quant.w4fp8 import w4_unpack_fp8

    packed, scale = pack_int4(torch.randn(48, 384), 0)
    w8, scale32 = w4_unpack_fp8(packed, scale)
    assert w8.dtype == torch.float8_e4m3fn and w8.shape == (48, 384) and scale32.shape == (1, 48)
    assert torch.equal(w8.float() * scale32.view(-1, 1), unpack_int4(packed, scale))
    assert w8.float().abs().max() <= 8


def test_only_per_row_cuda_layers_with_n_multiple_of_16_take_the_fast_path():
    from hprune.quant.w4fp8 import takes_fast_path

    packed, scale = pack_int4(torch.randn(48, 128), 0)
    assert not takes_fast_path(torch.randn(2, 128), packed, scale)  # CPU
    meta = torch.empty(2, 128, device="meta")
    assert takes_fast_path(type("X", (), {"is_cuda": True})(), packed, scale) and not takes_fast_path(meta, packed, scale)
    assert not takes_fast_path(type("X", (), {"is_cuda": True})(), *pack_int4(torch.randn(48, 128), 128))
    assert not takes_fast_path(type("X", (), {"is_cuda": True})(), *pack_int4(torch.randn(40, 128), 0))


def _rel(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


def _operands(m, k, n):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    packed, scale = pack_int4(torch.randn(n, k, device="cuda") * 0.02, 0)
    return x, packed, scale, torch.randn(n, device="cuda", dtype=torch.bfloat16)


@pytest.mark.gpu
def test_unpack_kernel_is_bit_exact():
    from hprune.quant.w4fp8 import unpack_fp8_reference
    from hprune.quant.w4fp8_unpack import unpack_fp8

    for n, k in [(2432, 9728), (3072, 15360), (208, 256)]:
        packed = torch.randint(0, 256, (n, k // 2), device="cuda", dtype=torch.uint8)
        scale = torch.rand(n, device="cuda").to(torch.bfloat16)
        w8, s32 = unpack_fp8(packed, scale)
        ref8, ref_s = unpack_fp8_reference(packed.cpu(), scale.cpu())
        assert torch.equal(w8.view(torch.uint8).cpu(), ref8.view(torch.uint8)) and torch.equal(s32.cpu(), ref_s)


@pytest.mark.gpu
@pytest.mark.parametrize("m,k,n", [(4429, 2432, 2432), (4608, 15360, 3072), (333, 2432, 9728), (1, 2432, 14592)])
def test_cublas_fast_path_matches_float64_of_the_quantized_operands(m, k, n):
    from hprune.quant.w4fp8 import fast_linear, quantize_tokens

    x, packed, scale, bias = _operands(m, k, n)
    x8, xs = quantize_tokens(x)
    ref = (x8.double() * xs.double()) @ unpack_int4(packed, scale).double().t() + bias.double()
    out = fast_linear(x, packed, scale, bias)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert _rel(out, ref) < 5e-3  # bf16 output rounding and FP8 fast accumulation


@pytest.mark.gpu
@pytest.mark.parametrize("m,k,n", [(4429, 2432, 2432), (333, 2432, 9728), (77, 256, 200)])
def test_swapped_triton_kernel_matches_float64_of_the_quantized_operands(m, k, n):
    from hprune.quant.w4fp8_kernel import w4fp8_matmul_swapped

    x, packed, scale, bias = _operands(m, k, n)
    x8, rowsum, xs = quantize_rows(x, 0)
    ref = (x8.double() * xs.double()[:, None]) @ unpack_int4(packed, scale).double().t() + bias.double()
    out = w4fp8_matmul_swapped(x8, rowsum, xs, packed, scale, bias)
    assert torch.isfinite(out).all() and _rel(out, ref) < 2e-2  # the -8 * rowsum offset cancels in fp32


@pytest.mark.gpu
def test_per_row_linear_takes_the_fast_path_under_compile():
    torch.manual_seed(0)
    lin = torch.nn.Linear(2432, 2432).to("cuda", torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, 0)
    x = torch.randn(2, 300, 2432, device="cuda", dtype=torch.bfloat16)
    eager, compiled = q(x), torch.compile(q)(x)
    assert torch.allclose(eager.float(), compiled.float(), atol=2e-2, rtol=2e-2)
    assert _rel(eager, lin(x).double()) < 0.2


@pytest.mark.parametrize("group", [128, 0])
def test_a_width_that_is_not_a_multiple_of_128_is_padded_and_quantized_exactly(group):
    # the shapes-sd3 teacher's widths (112, 448): padded with zero weights and zero inputs,
    # the layer computes what the unpadded int4 weight would
    torch.manual_seed(2)
    lin = torch.nn.Linear(112, 48).to(torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, group)
    assert q.qweight.shape == (48, 64)
    x = torch.randn(23, 112, dtype=torch.bfloat16)  # more rows than the skinny path takes
    w_int4 = unpack_int4(q.qweight, q.w_scale)
    assert w_int4[:, 112:].abs().max() == 0
    x8, _, xs = quantize_rows(torch.nn.functional.pad(x, (0, 16)), 0)
    expected = (x8.float() * xs[:, None])[:, :112] @ w_int4[:, :112].t() + lin.bias.float()
    assert torch.allclose(q(x).float(), expected, rtol=2e-2, atol=2e-2)
    assert ((q(x).float() - lin(x).float()).norm() / lin(x).float().norm()) < 0.15


@pytest.mark.gpu
def test_cublas_fast_path_takes_a_float32_model_with_a_bias():
    # cuBLAS refuses a bias with a float32 output; the shapes teachers are float32
    lin = torch.nn.Linear(112, 448).cuda()
    q = W4Fp8Linear.from_linear(lin, 0)
    x = torch.randn(300, 112, device="cuda")
    out = q(x)
    assert out.dtype == torch.float32
    assert ((out - lin(x)).norm() / lin(x).norm()) < 0.15


def test_a_gpu_without_fp8_gets_one_line_saying_w4fp8_is_slow_there(monkeypatch, capsys):
    import hprune.quant.w4fp8 as w4
    from hprune.quant import get_backend

    monkeypatch.setattr(w4, "FP8_COMPUTE", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA A100-SXM4-80GB")
    get_backend("w4fp8").check(device="cuda")
    err = capsys.readouterr().err
    assert "A100" in err and "compute capability 8.0" in err and "bnb-nf4" in err
    assert not w4.FP8_COMPUTE  # the forward takes the 16-bit fallback
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    get_backend("w4fp8").check(device="cuda")
    assert capsys.readouterr().err == "" and w4.FP8_COMPUTE


def test_the_dequantized_fallback_is_the_int4_weight_in_16_bits():
    from hprune.quant.w4fp8 import dequantized_linear

    torch.manual_seed(3)
    lin = torch.nn.Linear(256, 64).to(torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, 0)
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    expected = x.float() @ unpack_int4(q.qweight, q.w_scale).t() + lin.bias.float()
    assert torch.allclose(dequantized_linear(x, q.qweight, q.w_scale, q.bias).float(), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
def test_w4fp8_runs_on_a_gpu_taken_for_one_without_fp8(monkeypatch):
    import hprune.quant.w4fp8 as w4

    lin = torch.nn.Linear(256, 128).cuda().to(torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, 0)
    x = torch.randn(33, 256, device="cuda", dtype=torch.bfloat16)
    monkeypatch.setattr(w4, "FP8_COMPUTE", False)
    out = q(x)
    assert ((out.float() - lin(x).float()).norm() / lin(x).float().norm()) < 0.15


def test_only_few_row_per_row_calls_take_the_skinny_path(monkeypatch):
    import hprune.quant.w4fp8 as w4
    from hprune.quant.w4fp8 import SKINNY_MAX_M, takes_skinny_path

    rows = lambda m, cuda=True: type("X", (), {"is_cuda": cuda, "shape": (m, 128)})()  # noqa: E731
    _, per_row = pack_int4(torch.randn(48, 128), 0)
    _, grouped = pack_int4(torch.randn(48, 128), 128)
    assert takes_skinny_path(rows(1), per_row) and takes_skinny_path(rows(SKINNY_MAX_M), per_row)
    assert not takes_skinny_path(rows(SKINNY_MAX_M + 1), per_row) and not takes_skinny_path(rows(1), grouped)
    assert takes_skinny_path(rows(1, cuda=False), per_row)  # the CPU computes what the GPU does
    monkeypatch.setattr(w4, "FP8_COMPUTE", False)  # a GPU without FP8 keeps its dequantized fallback
    assert not takes_skinny_path(rows(1), per_row) and takes_skinny_path(rows(1, cuda=False), per_row)


def test_a_few_rows_on_the_cpu_skip_activation_quantization():
    torch.manual_seed(5)
    lin = torch.nn.Linear(256, 64)
    q = W4Fp8Linear.from_linear(lin, 0)
    w = unpack_int4(q.qweight, q.w_scale).double()
    few, many = torch.randn(2, 256), torch.randn(40, 256)
    assert torch.allclose(q(few).double(), few.double() @ w.t() + lin.bias.double(), atol=1e-4)
    x8, _, xs = quantize_rows(many, 0)
    assert torch.allclose(q(many).double(), (x8.double() * xs.double()[:, None]) @ w.t() + lin.bias.double(), atol=1e-3)


def test_skinny_reference_is_the_int4_weight_without_activation_quantization():
    from hprune.quant.w4fp8 import w4a16_skinny_mm

    torch.manual_seed(4)
    x, bias = torch.randn(3, 256), torch.randn(40)
    packed, scale = pack_int4(torch.randn(40, 256), 0)
    expected = x.double() @ unpack_int4(packed, scale).double().t() + bias.double()
    assert torch.allclose(w4a16_skinny_mm(x, packed, scale, bias).double(), expected, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("m,k,n", [(1, 2432, 14592), (8, 3072, 18432), (64, 2432, 2432), (3, 256, 200), (33, 384, 48)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_skinny_kernel_matches_float64_of_the_int4_weight(m, k, n, with_bias):
    from hprune.quant.w4_skinny import w4a16_skinny_mm

    x, packed, scale, bias = _operands(m, k, n)
    bias = bias if with_bias else None
    ref = x.double() @ unpack_int4(packed, scale).double().t() + (0 if bias is None else bias.double())
    out = w4a16_skinny_mm(x, packed, scale, bias)
    assert out.shape == (m, n) and out.dtype == torch.bfloat16
    assert _rel(out, ref) < 5e-3  # bf16 output rounding only


@pytest.mark.gpu
def test_skinny_kernel_takes_float32_inputs():
    from hprune.quant.w4_skinny import w4a16_skinny_mm

    packed, scale = pack_int4(torch.randn(48, 128, device="cuda"), 0)
    x = torch.randn(5, 128, device="cuda")
    ref = x.double() @ unpack_int4(packed, scale).double().t()
    out = w4a16_skinny_mm(x, packed, scale, None)
    assert out.dtype == torch.float32 and _rel(out, ref) < 5e-3  # TF32 products


@pytest.mark.gpu
def test_an_adaln_sized_call_takes_the_skinny_path_under_compile():
    torch.manual_seed(0)
    lin = torch.nn.Linear(2432, 14592).to("cuda", torch.bfloat16)
    q = W4Fp8Linear.from_linear(lin, 0)
    x = torch.randn(2, 2432, device="cuda", dtype=torch.bfloat16)
    expected = x.double() @ unpack_int4(q.qweight, q.w_scale).double().t() + lin.bias.double()
    eager, compiled = q(x), torch.compile(q)(x)
    assert _rel(eager, expected) < 5e-3 and _rel(compiled, expected) < 5e-3
