import copy

import pytest
import torch

from hprune.model import get_adapter
from hprune.planning.plan import Plan
from hprune.distill.freeze import block_scales, match_blocks, param_groups, pwp_boundary, sgdistill_scales
from hprune.distill.loop import build_student
from hprune.core.errors import HpruneError
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_sd3


def test_sgdistill_scales_are_normalised_inverse_sensitivity():
    scales = sgdistill_scales({"a": 0.5, "b": 0.1, "c": 0.2})
    assert scales["b"] == 1.0 and scales["a"] == 0.0
    assert 0 < scales["c"] < 1
    # 1/dP: c sits where its inverse sits between the extremes
    assert scales["c"] == pytest.approx((1 / 0.2 - 1 / 0.5) / (1 / 0.1 - 1 / 0.5))


def test_inverse_sgdistill_floors_dp_at_one_percent_of_the_largest():
    # A dP at or below 1% of the largest counts as that 1%: a near-zero dP neither divides by
    # zero nor takes the top of the range alone, squeezing every other block towards 0.
    dp = {"a": 1.0, "b": 0.02, "c": 0.01, "d": 1e-9, "e": 0.0}
    scales = sgdistill_scales(dp)
    assert scales["c"] == scales["d"] == scales["e"] == 1.0
    assert scales["a"] == 0.0
    assert scales["b"] == pytest.approx((1 / 0.02 - 1 / 1.0) / (1 / 0.01 - 1 / 1.0))
    # the floor is relative to the largest dP: the same table in other units gives the same scales
    for unit in (1e-3, 1e3):
        assert sgdistill_scales({k: unit * v for k, v in dp.items()}) == pytest.approx(scales)


def test_match_blocks_follows_original_indices():
    teacher = tiny_flux(num_layers=3, num_single_layers=4)
    plan = Plan.for_model(teacher, ["joint.1", "single.0", "single.2"])
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    assert [m.unit.key for m in matched] == ["joint.0.block", "joint.2.block", "single.1.block", "single.3.block"]
    assert [m.position for m in matched] == [0, 2, 4, 6]
    assert pwp_boundary(plan, None) == 1


def _sgd_step(teacher, plan, sensitivity):
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, None), pwp=False, sensitivity=sensitivity)
    groups = param_groups(student, matched, scales, lr=0.1, pwp=False)
    before = copy.deepcopy(student.state_dict())
    optimizer = torch.optim.SGD(groups, lr=0.1)
    out = student(**dummy_inputs(student))[0]
    out.pow(2).mean().backward()
    optimizer.step()
    moved = {m.unit.key: sum((p - before[n]).norm().item() for n, p in student.named_parameters()
                             if any(p is q for q in m.student.parameters()))
             for m in matched}
    return scales, moved


def test_sgdistill_scale_zero_freezes_and_half_moves_half():
    teacher = tiny_sd3(num_layers=5)
    plan = Plan.for_model(teacher, ["joint.3"])
    # dP chosen so that the normalised scales are 0 (joint.0), 1 (joint.1) and 0.5 (joint.2)
    sens = {"joint.0.block": 1.0, "joint.1.block": 0.25, "joint.2.block": 0.4, "joint.4.block": 0.25}
    scales, moved = _sgd_step(teacher, plan, sens)
    assert scales["joint.0.block"] == 0.0 and scales["joint.2.block"] == pytest.approx(0.5)
    assert moved["joint.0.block"] == 0.0
    full_scales, full_moved = _sgd_step(teacher, plan, None)
    assert full_scales["joint.2.block"] == 1.0
    # one SGD step: the update is exactly proportional to the learning rate
    assert moved["joint.2.block"] == pytest.approx(0.5 * full_moved["joint.2.block"], rel=1e-3)
    assert moved["joint.1.block"] == pytest.approx(full_moved["joint.1.block"], rel=1e-3)


def test_pwp_freezes_blocks_before_the_first_pruned_position():
    teacher = tiny_sd3(num_layers=5)
    plan = Plan.for_model(teacher, ["joint.2"])
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, None), pwp=True, sensitivity=None)
    assert scales == {"joint.0.block": 0.0, "joint.1.block": 0.0, "joint.3.block": 1.0, "joint.4.block": 1.0}
    param_groups(student, matched, scales, lr=1e-3, pwp=True)
    assert not student.pos_embed.proj.weight.requires_grad and student.proj_out.weight.requires_grad


def _pwp_scales(teacher, units, override=None):
    plan = Plan.for_model(teacher, units)
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, override), pwp=True, sensitivity=None)
    return student, matched, scales


def test_pwp_trains_a_damaged_early_block_and_freezes_the_intact_ones_before_the_first_removed_block():
    # "freezes the non-pruned and earlier portions": joint.0 lost its MLP, so it is not non-pruned
    # and trains; joint.1 and joint.2 are intact and before the first whole block removed (joint.3).
    teacher = tiny_sd3(num_layers=5)
    student, matched, scales = _pwp_scales(teacher, ["joint.0.mlp", "joint.3"])
    assert scales == {"joint.0.block": 1.0, "joint.1.block": 0.0, "joint.2.block": 0.0, "joint.4.block": 1.0}
    optimizer = torch.optim.SGD(param_groups(student, matched, scales, lr=0.1, pwp=True), lr=0.1)
    before = copy.deepcopy(student.state_dict())
    student(**dummy_inputs(student))[0].pow(2).mean().backward()
    optimizer.step()
    after = student.state_dict()
    moved = lambda prefix: any(not torch.equal(after[n], before[n]) for n in before if n.startswith(prefix))
    assert moved("transformer_blocks.0.") and moved("transformer_blocks.3.")  # student 3 = teacher joint.4
    assert not moved("transformer_blocks.1.") and not moved("transformer_blocks.2.") and not moved("pos_embed.")


def test_pwp_on_a_plan_of_subcomponents_only_trains_just_the_damaged_blocks():
    teacher = tiny_flux(num_layers=2, num_single_layers=3)
    _, _, scales = _pwp_scales(teacher, ["joint.1.attn", "single.0.mlp_proj"])
    assert scales == {"joint.0.block": 0.0, "joint.1.block": 1.0, "single.0.block": 1.0,
                      "single.1.block": 0.0, "single.2.block": 0.0}


def test_pwp_boundary_override_moves_the_boundary_and_a_damaged_block_still_trains():
    teacher = tiny_sd3(num_layers=5)
    units = ["joint.0.mlp", "joint.3"]
    assert _pwp_scales(teacher, units, override=0)[2] == {f"joint.{i}.block": 1.0 for i in (0, 1, 2, 4)}
    assert _pwp_scales(teacher, units, override=5)[2] == {"joint.0.block": 1.0, "joint.1.block": 0.0,
                                                          "joint.2.block": 0.0, "joint.4.block": 0.0}
    assert _pwp_scales(teacher, units, override=2)[2] == {"joint.0.block": 1.0, "joint.1.block": 0.0,
                                                          "joint.2.block": 1.0, "joint.4.block": 1.0}


def test_missing_sensitivity_is_a_clear_error():
    teacher = tiny_sd3(num_layers=4)
    plan = Plan.for_model(teacher, ["joint.1"])
    student = build_student(teacher, plan)
    with pytest.raises(HpruneError, match="no dP for joint.0.block"):
        block_scales(match_blocks(student, teacher, plan), 1, pwp=False, sensitivity={"joint.2.block": 0.1})


def test_linear_sgdistill_scales_keep_the_order_with_even_spacing():
    dp = {"a": 0.5, "b": 0.02, "c": 0.2, "d": 0.3}
    inverse, linear = sgdistill_scales(dp), sgdistill_scales(dp, "linear")
    assert sorted(dp, key=inverse.get) == sorted(dp, key=linear.get)
    assert linear["a"] == 0.0 and linear["b"] == 1.0
    assert linear["c"] == pytest.approx((0.5 - 0.2) / (0.5 - 0.02))
    assert inverse["c"] < 0.2 < linear["c"]  # 1/dP squeezes the middle towards 0


def test_binary_sgdistill_freezes_the_more_sensitive_half():
    scales = sgdistill_scales({"a": 0.5, "b": 0.02, "c": 0.2, "d": 0.3, "e": 0.3}, "binary")
    assert scales == {"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 1.0}  # the median (0.3) trains
    assert sgdistill_scales({"a": 0.5, "b": 0.02}, "binary") == {"a": 0.0, "b": 1.0}


def test_sg_scale_is_validated():
    from hprune.distill import DistillConfig
    from hprune.core.errors import HpruneError

    with pytest.raises(HpruneError, match="--sg-scale"):
        DistillConfig(sg_scale="log")


def _part_sensitivity(teacher, bump: dict[str, float]) -> dict[str, float]:
    """dP 0.1 for every unit of `teacher`, except those in `bump`."""
    adapter = get_adapter(teacher)
    keys = [info.unit.key for info in adapter.units(teacher)] + [u.key for u, _ in adapter.blocks(teacher)]
    return {**{key: 0.1 for key in keys}, **bump}


def test_subcomponent_sgdistill_scales_each_surviving_part_by_its_own_dp():
    teacher = tiny_sd3(num_layers=4)
    plan = Plan.for_model(teacher, ["joint.1.mlp"])
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    sens = _part_sensitivity(teacher, {"joint.2.attn": 1.0, "joint.2.mlp": 0.05})
    scales = block_scales(matched, 0, pwp=False, sensitivity=sens, granularity="subcomponent")
    assert "joint.1.mlp" not in scales  # removed: nothing left to train
    assert scales["joint.2.attn"] == 0.0 and scales["joint.2.mlp"] == 1.0
    assert 0 < scales["joint.1.attn"] < 1
    before = copy.deepcopy(student.state_dict())
    optimizer = torch.optim.SGD(param_groups(student, matched, scales, lr=0.1, pwp=False), lr=0.1)
    student(**dummy_inputs(student))[0].pow(2).mean().backward()
    optimizer.step()
    after = student.state_dict()
    moved = {n: (after[n] - before[n]).abs().max().item() for n in before}
    assert all(moved[n] == 0.0 for n in moved if n.startswith("transformer_blocks.2.attn."))
    assert any(moved[n] > 0 for n in moved if n.startswith("transformer_blocks.2.ff."))


def test_subcomponent_sgdistill_leaves_shared_weights_at_the_block_scale():
    teacher = tiny_flux(num_layers=1, num_single_layers=3)
    plan = Plan.for_model(teacher, ["single.0.attn"])
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    sens = _part_sensitivity(teacher, {"single.1.block": 1.0, "single.2.block": 0.05})
    scales = block_scales(matched, 0, pwp=False, sensitivity=sens, granularity="subcomponent")
    groups = {g["name"]: g for g in param_groups(student, matched, scales, lr=1.0, pwp=False)}
    single1 = student.single_transformer_blocks[1]
    # proj_out belongs to no part: it keeps the block's own (here zero) rate
    assert "single.1.block" not in groups and not single1.proj_out.weight.requires_grad
    assert single1.proj_mlp.weight.requires_grad and groups["single.1.mlp_proj"]["lr"] == scales["single.1.mlp_proj"]
    assert "single.0.attn" not in groups


def test_sg_granularity_is_validated():
    from hprune.distill import DistillConfig

    with pytest.raises(HpruneError, match="--sg-granularity"):
        DistillConfig(sg_granularity="head")


@pytest.mark.parametrize("granularity", ["block", "subcomponent"])
def test_sgdistill_never_unfreezes_a_block_that_pwp_froze(granularity):
    teacher = tiny_sd3(num_layers=5)
    plan = Plan.for_model(teacher, ["joint.2"])  # PWP freezes joint.0 and joint.1
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    # The frozen blocks (and their parts) are the least sensitive: SGDistill alone would give them
    # the full rate. joint.3 is the most sensitive trainable block, joint.4 the least.
    frozen = {f"joint.{i}.{sub}": 0.001 for i in (0, 1) for sub in ("block", "norm", "attn", "mlp")}
    sens = _part_sensitivity(teacher, {**frozen, "joint.3.block": 0.5, "joint.4.block": 0.2,
                                       "joint.3.attn": 0.4, "joint.4.mlp": 0.01})
    scales = block_scales(matched, pwp_boundary(plan, None), pwp=True, sensitivity=sens, granularity=granularity)
    assert all(v == 0.0 for k, v in scales.items() if k.startswith(("joint.0.", "joint.1."))), scales
    assert scales["joint.4.block"] == 1.0
    optimizer = torch.optim.SGD(param_groups(student, matched, scales, lr=0.1, pwp=True), lr=0.1)
    frozen_params = [p for block in student.transformer_blocks[:2] for p in block.parameters()]
    assert not any(p.requires_grad for p in frozen_params)
    before = copy.deepcopy(student.state_dict())
    student(**dummy_inputs(student))[0].pow(2).mean().backward()
    optimizer.step()
    after = student.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith(("transformer_blocks.0.",
                                                                                 "transformer_blocks.1.")))
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith("transformer_blocks.3."))


@pytest.mark.parametrize("granularity", ["block", "subcomponent"])
def test_sgdistill_scales_a_damaged_early_block_and_never_unfreezes_the_intact_one_beside_it(granularity):
    teacher = tiny_sd3(num_layers=5)
    plan = Plan.for_model(teacher, ["joint.0.mlp", "joint.2"])  # PWP freezes joint.1 only
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    # joint.1 is the least sensitive block of all; of the trainable ones joint.0 is the least, joint.3 the most.
    sens = _part_sensitivity(teacher, {"joint.1.block": 1e-4, "joint.1.attn": 1e-4, "joint.0.block": 0.05,
                                       "joint.0.attn": 0.05, "joint.3.block": 0.5, "joint.3.attn": 0.5})
    scales = block_scales(matched, pwp_boundary(plan, None), pwp=True, sensitivity=sens, granularity=granularity)
    assert all(v == 0.0 for k, v in scales.items() if k.startswith("joint.1.")), scales
    assert scales["joint.0.block"] == 1.0 and scales["joint.3.block"] == 0.0
    if granularity == "subcomponent":
        assert scales["joint.0.attn"] > 0 and "joint.0.mlp" not in scales
    optimizer = torch.optim.SGD(param_groups(student, matched, scales, lr=0.1, pwp=True), lr=0.1)
    before = copy.deepcopy(student.state_dict())
    student(**dummy_inputs(student))[0].pow(2).mean().backward()
    optimizer.step()
    after = student.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("transformer_blocks.1."))
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith("transformer_blocks.0."))
