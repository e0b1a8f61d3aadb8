import copy
import warnings

import pytest
import torch
import torch.nn as nn

from hprune.core.errors import HpruneError
from hprune.core.provenance import steps_of
from hprune.folders import load, save
from hprune.quant.calibration import default_calibration
from hprune.quant.gptq import collect_hessians, gptq_codes, gptq_codes_many, hessian_rounds
from hprune.quant.quantize import QuantConfig, quantize_
from hprune.quant.w4fp8 import row_scales
from hprune.toy.pipeline import load_pipeline


def correlated_inputs(n=512, k=64, seed=0):
    """Inputs whose columns are strongly correlated, as a network's activations are."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g) @ torch.randn(8, k, generator=g) + 0.1 * torch.randn(n, k, generator=g)


def output_error(x, w, q):
    return ((x @ w.t() - x @ q.t()).norm() / (x @ w.t()).norm()).item()


def test_gptq_beats_round_to_nearest_on_the_layer_output():
    x = correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    scale = row_scales(w)
    nearest = (w / scale[:, None]).round().clamp(-8, 7) * scale[:, None]
    gptq = gptq_codes(w, x.t() @ x, scale).float() * scale[:, None]
    assert gptq_codes(w, x.t() @ x, scale).dtype == torch.int8
    assert output_error(x, w, gptq) < 0.5 * output_error(x, w, nearest)


def test_with_uncorrelated_inputs_gptq_is_round_to_nearest():
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(2))
    scale = row_scales(w)
    codes = gptq_codes(w, torch.eye(256), scale, act_order=False)
    assert torch.equal(codes.float(), (w / scale[:, None]).round().clamp(-8, 7))


def test_an_h_float32_finds_indefinite_gets_more_damping_and_one_that_stays_so_rounds_to_nearest():
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(4))
    scale = row_scales(w)
    nearest = (w / scale[:, None]).round().clamp(-8, 7)
    indefinite_at_first = torch.diag(torch.tensor([100.0] * 127 + [-5.0]))  # 1% damping leaves -4, 10% does not
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # damped more, not given up on
        assert torch.equal(gptq_codes(w, indefinite_at_first, scale, act_order=False).float(), nearest)
    with pytest.warns(UserWarning, match="rounded to nearest"):
        assert torch.equal(gptq_codes(w, -torch.eye(128), scale).float(), nearest)


def test_layers_rounded_together_get_the_codes_each_gets_alone():
    g = torch.Generator().manual_seed(5)
    layers = []
    for i, (n, k) in enumerate([(16, 256), (24, 384), (16, 256), (16, 256), (24, 384)]):  # two shapes, interleaved; blocks of 128
        x = correlated_inputs(k=k, seed=10 + i)
        w = torch.randn(n, k, generator=g)
        layers.append((w, x.t() @ x, row_scales(w)))
    layers.append((layers[0][0], -torch.eye(256), layers[0][2]))  # one that falls back to nearest, inside a batch
    with pytest.warns(UserWarning, match="rounded to nearest"):
        alone = [gptq_codes(*layer) for layer in layers]
    for batch_bytes in (2**30, 256 * 256 * 4 * 2):  # all of a shape at once; two at a time
        with pytest.warns(UserWarning, match="rounded to nearest"):
            together = gptq_codes_many(layers, batch_bytes=batch_bytes)
        assert len(together) == len(layers)
        for a, b in zip(alone, together):
            assert torch.equal(a, b)


def test_hessians_sum_the_inputs_and_layers_fed_the_same_tensor_share_one():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.to_q, self.to_k, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            return self.out(self.to_q(x) * self.to_k(x))

    model = Attn()
    xs = [torch.randn(3, 8) for _ in range(2)]
    names = ["to_q", "to_k", "out"]
    h = collect_hessians(model, names, lambda: [model(x) for x in xs])
    expected = sum(x.t() @ x for x in xs)
    assert torch.allclose(h["to_q"], expected, atol=1e-5) and h["to_k"] is h["to_q"]
    mid = [model.to_q(x) * model.to_k(x) for x in xs]
    assert torch.allclose(h["out"], sum(m.t() @ m for m in mid), atol=1e-4)
    assert collect_hessians(model, names, lambda: None) == {}  # layers never called get none


def test_hessian_rounds_keep_each_round_within_the_budget():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(32, 16))
    per16 = 16 * 16 * 4
    assert hessian_rounds(model, ["0", "1", "2"], 2 * per16) == [["0", "1"], ["2"]]
    assert hessian_rounds(model, ["0", "1", "2"], 10**9) == [["0", "1", "2"]]


def test_gptq_needs_w4fp8_per_row_and_a_calibration():
    with pytest.raises(HpruneError, match="rounding 'gptq' takes backend w4fp8 with one scale per row"):
        QuantConfig(backend="w4fp8", group_size=128, rounding="gptq")
    with pytest.raises(HpruneError, match="rounding 'sto' is not one of"):
        QuantConfig(rounding="sto")
    with pytest.raises(HpruneError, match="needs calibration images"):
        quantize_(nn.Sequential(nn.Linear(128, 16)), QuantConfig(rounding="gptq"))


@pytest.fixture(scope="module")
def shapes():
    return load_pipeline("shapes-sd3")


def drawn_update(pipe, model):
    """The guided velocity of one fixed input: what a sampling step adds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 64, 64, generator=g)
    seq, pooled = pipe.text_encoder.encode(["a red circle", "two blue squares"])
    with torch.no_grad():
        return model(hidden_states=x, encoder_hidden_states=seq, pooled_projections=pooled,
                     timestep=torch.tensor([500.0, 500.0])).sample


def test_gptq_on_a_shapes_teacher_has_less_error_than_nearest_and_loads_back(shapes, tmp_path):
    reference = drawn_update(shapes, shapes.transformer)
    err = {}
    for rounding in ("nearest", "gptq"):
        model = copy.deepcopy(shapes.transformer)
        quantize_(model, QuantConfig(rounding=rounding), calibration=default_calibration(shapes, images=16))
        err[rounding] = ((drawn_update(shapes, model) - reference).norm() / reference.norm()).item()
    assert err["gptq"] < 0.85 * err["nearest"], err
    step = steps_of(model, "quantize")[-1]
    assert step["config"]["rounding"] == "gptq" and step["calibration"]["images"] == 16
    save(model, tmp_path / "q")
    assert torch.equal(drawn_update(shapes, load(tmp_path / "q")), drawn_update(shapes, model))


@pytest.mark.gpu
def test_gptq_runs_on_the_gpu_and_beats_nearest_there():
    x = correlated_inputs(n=2048, k=256).cuda()
    w = torch.randn(128, 256, generator=torch.Generator().manual_seed(3)).cuda()
    scale = row_scales(w)
    nearest = (w / scale[:, None]).round().clamp(-8, 7) * scale[:, None]
    codes = gptq_codes(w, x.t() @ x, scale)
    assert codes.is_cuda and output_error(x, w, codes.float() * scale[:, None]) < 0.5 * output_error(x, w, nearest)
