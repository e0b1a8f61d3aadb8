import json

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock
from diffusers.models.attention import JointTransformerBlock

from hprune.distill import DistillConfig, distill
from hprune.distill.data import DistillData
from hprune.distill.freeze import block_scales, match_blocks, param_groups, pwp_boundary
from hprune.distill.loop import build_student
from hprune.distill.prefix import replay_prefix, shared_prefix
from hprune.model.testing import tiny_flux, tiny_sd3
from hprune.planning.plan import Plan


def flux_data(n=16):
    g = torch.Generator().manual_seed(0)
    return DistillData(torch.randn(n, 1, 4, 4, generator=g), torch.randn(n, 6, 32, generator=g), torch.randn(n, 8, generator=g))


def sd3_data(n=16):
    g = torch.Generator().manual_seed(0)
    return DistillData(torch.randn(n, 4, 8, 8, generator=g), torch.randn(n, 6, 32, generator=g), torch.randn(n, 16, generator=g))


CASES = {  # teacher, plan units, data: the prefix ends inside the single blocks (FLUX) and at joint.2 (SD3)
    "flux": (lambda: tiny_flux(num_layers=2, num_single_layers=4), ["single.2"], flux_data),
    "sd3": (lambda: tiny_sd3(num_layers=5), ["joint.2", "joint.4.mlp"], sd3_data),
}


def _prefix(teacher, plan, pwp=True, sgdistill=None):
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, None), pwp, sgdistill)
    param_groups(student, matched, scales, 1e-3, pwp)
    return shared_prefix(student, matched)


def _run(case, tmp_path, share: bool, steps=4, **config):
    make, units, data = CASES[case]
    torch.manual_seed(0)
    teacher = make()
    cfg = DistillConfig(steps=steps, batch_size=4, lr=1e-3, pwp=True, share_prefix=share, checkpoint_every=100, **config)
    student = distill(teacher, Plan.for_model(teacher, units), data(), cfg, tmp_path / str(share), progress=False)
    summary = json.loads((tmp_path / str(share) / "training_summary.json").read_text())
    loss = [line.split(",") for line in (tmp_path / str(share) / "loss.csv").read_text().splitlines()[1:]]
    return student, summary, loss, teacher


@pytest.mark.parametrize("case,config", [("flux", {}), ("sd3", {}), ("sd3", {"gradient_checkpointing": True})])
def test_the_shared_prefix_changes_no_loss_and_no_weight(case, config, tmp_path):
    shared, summary, loss, teacher = _run(case, tmp_path, True, **config)
    plain, plain_summary, plain_loss, _ = _run(case, tmp_path, False, **config)
    assert summary["shared_prefix_blocks"] and plain_summary["shared_prefix_blocks"] == []
    assert loss == plain_loss
    assert all(torch.equal(a, b) for a, b in zip(shared.parameters(), plain.parameters()))
    # restored: no replayed forward left on the student, no hook left on the teacher
    assert not any("forward" in vars(m) for m in shared.modules())
    assert not any(m._forward_hooks for m in teacher.modules())


def test_the_prefix_is_the_frozen_run_in_front_of_the_first_trained_block():
    teacher = tiny_flux(num_layers=2, num_single_layers=4)
    prefix = _prefix(teacher, Plan.for_model(teacher, ["single.2"]))
    assert [m.unit.key for m in prefix] == ["joint.0.block", "joint.1.block", "single.0.block", "single.1.block"]
    # a damaged early block trains under PWP: the prefix stops in front of it
    damaged = _prefix(teacher, Plan.for_model(teacher, ["single.2", "joint.1.mlp"]))
    assert [m.unit.key for m in damaged] == ["joint.0.block"]
    assert _prefix(teacher, Plan.for_model(teacher, ["single.2"]), pwp=False) == []  # the embedders train


def test_a_damaged_block_that_sgdistill_stops_is_not_replayed(tmp_path):
    """SGDistill gives the most sensitive trainable block scale 0: damaged joint.0 then trains nothing,
    yet it lost its MLP and so differs from the teacher's joint.0."""
    teacher = tiny_sd3(num_layers=5)
    plan = Plan.for_model(teacher, ["joint.0.mlp", "joint.3"])
    sensitivity = {"joint.0.block": 0.9, "joint.1.block": 0.1, "joint.2.block": 0.2, "joint.4.block": 0.3}
    assert _prefix(teacher, plan, sgdistill=sensitivity) == []
    runs = []
    for share in (True, False):
        cfg = DistillConfig(steps=2, batch_size=4, lr=1e-3, pwp=True, sgdistill=True, share_prefix=share)
        distill(teacher, plan, sd3_data(), cfg, tmp_path / str(share), sensitivity=sensitivity, progress=False)
        runs.append((tmp_path / str(share) / "loss.csv").read_text())
    assert runs[0] == runs[1]


def test_prefix_blocks_do_not_run(tmp_path, monkeypatch):
    calls = []
    for cls in (FluxTransformerBlock, FluxSingleTransformerBlock, JointTransformerBlock):
        original = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, *a, _f=original, **k: (calls.append(1), _f(self, *a, **k))[1])
    _run("flux", tmp_path, True, steps=2)
    shared = len(calls)
    calls.clear()
    _run("flux", tmp_path, False, steps=2)
    # per step: the student's 5 blocks, of which its 4 prefix blocks no longer run
    assert len(calls) - shared == 2 * 4


def test_the_replay_refuses_to_run_before_the_teacher():
    teacher = tiny_sd3(num_layers=4)
    plan = Plan.for_model(teacher, ["joint.2"])
    student = build_student(teacher, plan)
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, None), True, None)
    param_groups(student, matched, scales, 1e-3, True)
    prefix = shared_prefix(student, matched)
    x = sd3_data(2)
    with replay_prefix(prefix), pytest.raises(RuntimeError, match="before the teacher's forward"):
        student(hidden_states=x.x0[:1], encoder_hidden_states=x.seq[:1], pooled_projections=x.pooled[:1],
                timestep=torch.tensor([500.0]))


def test_a_failed_step_leaves_the_teacher_without_hooks(tmp_path, monkeypatch):
    import hprune.distill.loop as loop

    def fail(*args):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(loop, "kd_loss", fail)
    teacher = tiny_sd3(num_layers=5)
    cfg = DistillConfig(steps=2, batch_size=4, pwp=True)
    with pytest.raises(RuntimeError, match="a step failed"):
        distill(teacher, Plan.for_model(teacher, ["joint.2"]), sd3_data(), cfg, tmp_path / "o", progress=False)
    assert not any(m._forward_hooks for m in teacher.modules())
