"""scripts/quant_quality_shapes.py: the MSE clip-ratio search for w4fp8's per-row int4 scales."""

import torch
import torch.nn as nn

from hprune.quant.w4fp8 import W4Fp8Linear, pack_int4, quantize_tokens, unpack_int4


def _heavy_tailed(n=96, k=256, seed=0):
    torch.manual_seed(seed)
    return torch.distributions.StudentT(2.0).sample((n, k)) * 0.02


def test_ratio_grid_runs_from_half_to_one(script):
    m = script("quant_quality_shapes")
    assert m.RATIOS[0] == 0.5 and m.RATIOS[-1] == 1.0 and len(m.RATIOS) == 26


def test_mse_packing_is_never_worse_than_absmax_and_clips_heavy_tails(script):
    m = script("quant_quality_shapes")
    torch.manual_seed(0)
    for weight in (torch.randn(64, 128), _heavy_tailed()):
        for group_size in (0, 64):
            packed, scale = m.pack_int4_mse(weight, group_size)
            ref_packed, ref_scale = pack_int4(weight, group_size)
            err = (unpack_int4(packed, scale) - weight).square().sum(-1)
            ref_err = (unpack_int4(ref_packed, ref_scale) - weight).square().sum(-1)
            assert (err <= ref_err * (1 + 1e-6)).all()  # row by row
            assert err.sum() < ref_err.sum()
    _, ratios = m.search_clip(_heavy_tailed())
    assert ratios.shape == (96, 1)
    assert (ratios < 1).sum() >= 1 and ratios.min() >= 0.5
    # heavy tails: clipping pays off on most rows, and the absmax ratio 1.0 can still win
    assert (ratios < 1).float().mean() > 0.5


def test_mse_packing_has_pack_int4s_format(script):
    m = script("quant_quality_shapes")
    weight = torch.randn(48, 256)
    for group_size in (0, 32, 128):
        packed, scale = m.pack_int4_mse(weight, group_size)
        ref_packed, ref_scale = pack_int4(weight, group_size)
        assert packed.shape == ref_packed.shape and packed.dtype == ref_packed.dtype == torch.uint8
        assert scale.shape == ref_scale.shape and scale.dtype == ref_scale.dtype == torch.bfloat16
        assert packed.is_contiguous() and scale.is_contiguous()
        # a grid of just 1.0 is absmax scaling: bit for bit pack_int4
        only_absmax = m.pack_int4_mse(weight, group_size, ratios=(1.0,))
        assert torch.equal(only_absmax[0], ref_packed) and torch.equal(only_absmax[1], ref_scale)


def test_mse_weights_run_through_w4fp8linear_and_the_fast_emulation_matches(script):
    m = script("quant_quality_shapes")
    torch.manual_seed(1)
    lin = nn.Linear(112, 64)  # a narrow shapes width, padded to 128 inputs
    model = nn.Sequential(lin)
    x = torch.randn(4, 5, 112)  # 20 token rows: more than the skinny path takes, so activations are FP8
    real = m.build_variant(model, "w4fp8-mse", real=True)
    fake = m.build_variant(model, "w4fp8-mse", real=False)
    assert isinstance(real[0], W4Fp8Linear) and isinstance(fake[0], m.FakeQuantLinear)
    packed, scale = m.pack_int4_mse(torch.nn.functional.pad(lin.weight.data, (0, 16)), 0)
    assert torch.equal(real[0].qweight, packed) and torch.equal(real[0].w_scale, scale)
    with torch.no_grad():
        assert torch.allclose(real(x), fake(x), atol=1e-5, rtol=1e-5)
        few = x[:3]  # 15 token rows: both skip the activation quantization, as the skinny path does
        assert torch.allclose(real(few), fake(few), atol=1e-5, rtol=1e-5)
        # a8-only: float weights, activations exactly as quantize_tokens
        x8, s = quantize_tokens(x.reshape(-1, 112))
        a8 = m.build_variant(model, "a8-only")
        assert torch.allclose(a8(x), lin((x8.float() * s).view(x.shape)), atol=1e-6)
