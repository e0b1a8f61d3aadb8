import copy
import gc
import weakref

import psutil
import pytest
import torch
import torch.nn.functional as F

from hprune.model import get_adapter
from hprune.planning.plan import Plan
from hprune.core.errors import HpruneError
from hprune.prune.surgery import calibrate_norms, identity_modulation, prune_, removed
from hprune.model.testing import TINY_MODELS, TINY_WIDTH, dummy_inputs, tiny_sd3, tiny_sd35_medium

MODES = ("identity", "mean")


def _out(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", list(TINY_MODELS))
def test_removing_nothing_changes_no_bit(family):
    model = TINY_MODELS[family]()
    kwargs = dummy_inputs(model)
    ref = _out(model, kwargs)
    with removed(model, []):
        assert torch.equal(_out(model, kwargs), ref)
    pruned = prune_(copy.deepcopy(model), Plan.for_model(model, []))
    assert torch.equal(_out(pruned, kwargs), ref)


@pytest.mark.parametrize("family", list(TINY_MODELS))
def test_reversible_equals_physical_for_every_unit(family):
    model = TINY_MODELS[family]()
    adapter = get_adapter(model)
    kwargs = dummy_inputs(model)
    ref, before = _out(model, kwargs), _state(model)
    means = calibrate_norms(model, [kwargs])
    for info in adapter.units(model):
        for mode in MODES if info.unit.is_norm else MODES[:1]:
            with removed(model, [info.unit], norm_mode=mode, norm_means=means):
                reversible = _out(model, kwargs)
            physical = prune_(copy.deepcopy(model), Plan.for_model(model, [info.unit], norm_mode=mode), means)
            assert torch.allclose(reversible, _out(physical, kwargs), atol=1e-5), (info.unit, mode)
            # parameter arithmetic: the adapter's count is exactly what disappears
            assert sum(p.numel() for p in physical.parameters()) == adapter.total_params(model) - info.params
    assert torch.equal(_out(model, kwargs), ref)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", list(TINY_MODELS))
def test_multi_unit_plan_reversible_equals_physical(family):
    model = TINY_MODELS[family]()
    adapter = get_adapter(model)
    kwargs = dummy_inputs(model)
    infos = adapter.units(model)
    # one whole block plus every subcomponent of another block
    first = next(i.unit for i in infos if i.unit.is_block)
    other = [i.unit for i in infos if not i.unit.is_block and i.unit.block_unit() != first][:4]
    units = [first, *other]
    with removed(model, units):
        reversible = _out(model, kwargs)
    plan = Plan.for_model(model, units)
    physical = prune_(copy.deepcopy(model), plan)
    assert torch.allclose(reversible, _out(physical, kwargs), atol=1e-5)
    removed_params = sum(adapter.unit_params(model, u) for u in units)
    assert sum(p.numel() for p in physical.parameters()) == adapter.total_params(model) - removed_params


def test_removal_changes_the_output():
    model = tiny_sd3()
    kwargs = dummy_inputs(model)
    ref = _out(model, kwargs)
    with removed(model, ["joint.1.attn"]):
        assert not torch.allclose(_out(model, kwargs), ref)


def test_model_restored_after_an_exception():
    model = tiny_sd3()
    kwargs = dummy_inputs(model)
    ref = _out(model, kwargs)
    with pytest.raises(RuntimeError):
        with removed(model, ["joint.0", "joint.1.mlp"]):
            raise RuntimeError("boom")
    assert torch.equal(_out(model, kwargs), ref)


def test_identity_modulation_has_unit_gates():
    linear = torch.nn.Linear(4, 24)
    value = identity_modulation(linear).view(6, 4)
    assert value[[2, 5]].eq(1).all() and value[[0, 1, 3, 4]].eq(0).all()


def test_identity_norm_of_a_dual_attention_block_opens_all_three_gates():
    # SD3.5 Medium's dual-attention blocks modulate with nine chunks (SD35AdaLayerNormZeroX):
    # shift, scale and gate of attn, of the MLP and of attn2. Diffusers' own forward reads
    # them, so every chunk is checked where the block uses it.
    model = tiny_sd35_medium()
    norm = model.transformer_blocks[0].norm1
    assert norm.linear.out_features == 9 * norm.linear.in_features
    gen = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2, 5, TINY_WIDTH, generator=gen), torch.randn(2, TINY_WIDTH, generator=gen)
    with removed(model, ["joint.0.norm"], norm_mode="identity"):
        x_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp, x_attn2, gate_attn2 = norm(x, emb)
    plain = F.layer_norm(x, (TINY_WIDTH,), eps=1e-6)
    ones, zeros = torch.ones(2, TINY_WIDTH), torch.zeros(2, TINY_WIDTH)
    assert torch.allclose(x_attn, plain, atol=1e-6)  # attn: shift 0, scale 0
    assert torch.allclose(x_attn2, plain, atol=1e-6)  # attn2: shift 0, scale 0
    assert torch.equal(shift_mlp, zeros) and torch.equal(scale_mlp, zeros)
    assert torch.equal(gate_attn, ones) and torch.equal(gate_mlp, ones) and torch.equal(gate_attn2, ones)


def test_mean_mode_needs_calibration():
    model = tiny_sd3()
    with pytest.raises(HpruneError, match="calibrat"):
        with removed(model, ["joint.0.norm"], norm_mode="mean"):
            pass


def test_mean_mode_keeps_the_average_modulation():
    # With one calibration input whose timesteps are all equal, the mean equals
    # the exact modulation, so removing the norm in mean mode changes nothing.
    model = tiny_sd3()
    kwargs = dummy_inputs(model, batch=2)
    kwargs["timestep"] = torch.full((2,), 500.0)
    kwargs["pooled_projections"] = kwargs["pooled_projections"][:1].expand(2, -1).clone()
    means = calibrate_norms(model, [kwargs])
    with removed(model, ["joint.1.norm", "joint.2.context_norm"], norm_mode="mean", norm_means=means):
        out = _out(model, kwargs)
    assert torch.allclose(out, _out(model, kwargs), atol=1e-5)


def test_plan_for_another_size_is_refused():
    small, big = tiny_sd3(num_layers=3), tiny_sd3(num_layers=5)
    plan = Plan.for_model(big, ["joint.1"])
    with pytest.raises(HpruneError, match="made for a SD3Transformer2DModel with 5 layers"):
        prune_(small, plan)


def test_physical_block_removal_updates_config_and_frees_weights():
    model = tiny_sd3(num_layers=5, dual_attention_layers=(0, 3))
    doomed = weakref.ref(model.transformer_blocks[1].ff.net[0].proj.weight)
    prune_(model, Plan.for_model(model, ["joint.1", "joint.2"]))
    gc.collect()
    assert doomed() is None
    assert model.config.num_layers == 3 and list(model.config.dual_attention_layers) == [0, 1]
    assert len(model.transformer_blocks) == 3


def test_reversible_removal_copies_no_weights():
    # A model of ~64 MB: removing every block in turn must not grow memory by
    # more than 10% of it (a single copied block would be ~8 MB = 12%).
    model = tiny_sd3(num_layers=9, attention_head_dim=64, num_attention_heads=4, caption_projection_dim=256,
                     joint_attention_dim=256)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    process = psutil.Process()
    gc.collect()
    baseline, peak = process.memory_info().rss, 0
    for block_unit, _ in get_adapter(model).blocks(model)[:-1]:
        with removed(model, [block_unit] + []):
            peak = max(peak, process.memory_info().rss)
        with removed(model, [block_unit.__class__(block_unit.kind, block_unit.index, "mlp")]):
            peak = max(peak, process.memory_info().rss)
    assert size > 50e6
    assert peak - baseline < 0.10 * size
