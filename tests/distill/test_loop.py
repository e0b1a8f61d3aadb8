import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from hprune.planning.plan import Plan
from hprune.distill import DistillConfig, distill
from hprune.distill.data import DistillData, draw_batch
from hprune.distill.loop import build_student
from hprune.model.flow import velocity_fn
from hprune.core.errors import HpruneError
from hprune.folders import MANIFEST, load, save
from hprune.model.testing import tiny_flux, tiny_pipeline, tiny_sd3


def sd3_data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DistillData(torch.randn(n, 4, 8, 8, generator=g), torch.randn(n, 6, 32, generator=g),
                       torch.randn(n, 16, generator=g))


def _kd_on(student, teacher, data):
    batch = draw_batch(data, 16, seed=123, step=0)
    v = velocity_fn(teacher)
    with torch.no_grad():
        return torch.nn.functional.mse_loss(v(student, batch.noisy, batch.sigma, batch.seq, batch.pooled),
                                            v(teacher, batch.noisy, batch.sigma, batch.seq, batch.pooled)).item()


def test_distillation_reduces_the_gap_to_the_teacher(tmp_path):
    teacher, data = tiny_sd3(num_layers=4), sd3_data()
    plan = Plan.for_model(teacher, ["joint.1"])
    before = _kd_on(build_student(teacher, plan), teacher, data)
    cfg = DistillConfig(steps=40, batch_size=8, lr=3e-3, checkpoint_every=100)
    student = distill(teacher, plan, data, cfg, tmp_path / "out", progress=False)
    assert _kd_on(student.eval(), teacher, data) < 0.5 * before
    save(student, tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert len(loaded.transformer_blocks) == 3
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), student.parameters()))
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert summary["steps"] == 40 and summary["trainable_params"] > 0
    history = json.loads((tmp_path / "model" / MANIFEST).read_text())["history"]
    assert [s["stage"] for s in history] == ["prune", "distill"] and history[1]["summary"]["steps"] == 40
    assert not list((tmp_path / "model").glob("*.csv")) and not (tmp_path / "model" / "checkpoints").exists()


def test_flux_student_trains_with_pwp(tmp_path):
    teacher = tiny_flux(num_layers=2, num_single_layers=3)
    g = torch.Generator().manual_seed(0)
    data = DistillData(torch.randn(16, 1, 4, 4, generator=g), torch.randn(16, 6, 32, generator=g), torch.randn(16, 8, generator=g))
    plan = Plan.for_model(teacher, ["single.1", "single.2.mlp_proj"])
    student = distill(teacher, plan, data, DistillConfig(steps=3, batch_size=4, pwp=True), tmp_path / "o", progress=False)
    # PWP: the double blocks and single.0 precede the first pruned position and keep the teacher's weights
    for s, t in zip(student.transformer_blocks, teacher.transformer_blocks):
        assert all(torch.equal(a, b) for a, b in zip(s.parameters(), t.parameters()))
    assert not torch.equal(student.single_transformer_blocks[1].proj_out.weight,
                           teacher.single_transformer_blocks[2].proj_out.weight[:, :16])


def test_subcomponent_sgdistill_trains_the_parts_of_the_most_sensitive_block(tmp_path):
    teacher, data = tiny_sd3(num_layers=4), sd3_data()
    plan = Plan.for_model(teacher, ["joint.1"])
    # joint.3 is the most sensitive block (block scale 0), but only its attention is protected
    sens = {"joint.0.block": 0.2, "joint.2.block": 0.1, "joint.3.block": 0.9,
            **{f"joint.{i}.{sub}": 0.1 for i in (0, 2, 3) for sub in ("norm", "context_norm", "attn", "mlp", "context_mlp")},
            "joint.3.attn": 0.8}
    cfg = DistillConfig(steps=3, batch_size=4, lr=1e-2, sgdistill=True, sg_granularity="subcomponent")
    student = distill(teacher, plan, data, cfg, tmp_path / "o", sensitivity=sens, progress=False)
    scales = json.loads((tmp_path / "o" / "training_summary.json").read_text())["block_lr_scales"]
    assert scales["joint.3.block"] == 0.0 and scales["joint.3.attn"] == 0.0 and scales["joint.3.norm"] == 1.0
    s_block, t_block = student.transformer_blocks[2], teacher.transformer_blocks[3]
    assert all(torch.equal(a, b) for a, b in zip(s_block.attn.parameters(), t_block.attn.parameters()))
    assert not torch.equal(s_block.norm1.linear.weight, t_block.norm1.linear.weight)


def test_sgdistill_leaves_the_blocks_pwp_froze_at_the_teachers_weights(tmp_path):
    teacher, data = tiny_sd3(num_layers=4), sd3_data()
    plan = Plan.for_model(teacher, ["joint.2"])  # PWP freezes joint.0 and joint.1
    # the frozen blocks are the least sensitive: SGDistill alone would train them at the full rate
    sens = {"joint.0.block": 0.001, "joint.1.block": 0.001, "joint.3.block": 0.5}
    cfg = DistillConfig(steps=2, batch_size=4, lr=1e-2, pwp=True, sgdistill=True)
    student = distill(teacher, plan, data, cfg, tmp_path / "o", sensitivity=sens, progress=False)
    for s, t in zip(student.transformer_blocks[:2], teacher.transformer_blocks[:2]):
        assert all(torch.equal(a, b) for a, b in zip(s.parameters(), t.parameters()))
    assert not torch.equal(student.proj_out.weight, teacher.proj_out.weight)  # the rest did train


def test_refuses_to_overwrite_an_earlier_run(tmp_path):
    teacher, data = tiny_sd3(num_layers=3), sd3_data(8)
    plan = Plan.for_model(teacher, ["joint.0"])
    cfg = DistillConfig(steps=2, batch_size=2)
    distill(teacher, plan, data, cfg, tmp_path / "o", progress=False)
    with pytest.raises(HpruneError, match="--resume"):
        distill(teacher, plan, data, cfg, tmp_path / "o", progress=False)


def test_config_names_the_bad_flag():
    with pytest.raises(HpruneError, match="--steps must be at least 1.*--optimizer must be one of"):
        DistillConfig(steps=0, optimizer="lion")


def _cli(tmp_path, out, steps):
    return [sys.executable, "-m", "hprune", "distill", "--teacher", str(tmp_path / "pipe"),
            "--plan", str(tmp_path / "plan.json"), "--data", str(tmp_path / "data.safetensors"),
            "--out", str(out), "--steps", str(steps), "--batch-size", "4", "--lr", "1e-3",
            "--checkpoint-every", "5", "--mixed-precision", "no"]


def test_killed_run_resumes_bit_for_bit(tmp_path):
    pipe = tiny_pipeline("sd3")
    pipe.save_pretrained(tmp_path / "pipe")
    Plan.for_model(pipe.transformer, ["joint.1"]).save(tmp_path / "plan.json")
    sd3_data(16).save(tmp_path / "data.safetensors")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = 60
    proc = subprocess.Popen(_cli(tmp_path, tmp_path / "killed", steps), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "latest").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "training_summary.json").exists(), "run finished before the kill"
    subprocess.run(_cli(tmp_path, tmp_path / "killed", steps) + ["--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(_cli(tmp_path, tmp_path / "whole", steps), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    weights = "model/transformer/diffusion_pytorch_model.safetensors"
    killed = load_file(str(tmp_path / "killed" / weights))
    whole = load_file(str(tmp_path / "whole" / weights))
    assert killed.keys() == whole.keys()
    assert all(torch.equal(killed[k], whole[k]) for k in whole)
    assert (tmp_path / "killed" / "loss.csv").read_text() == (tmp_path / "whole" / "loss.csv").read_text()
    summary = json.loads((tmp_path / "killed" / "training_summary.json").read_text())
    assert summary["resumed_from"] > 0


class _Stopped(Exception):
    pass


def _count_teacher_calls(teacher, stop_at=None) -> list[int]:
    """Counts the teacher's forward calls (one per training step); with `stop_at`, the call of
    that number raises: the run stops there as a killed one would, in this process."""
    calls = [0]

    def hook(module, args, kwargs):
        if module is teacher:  # the student, a deep copy of the teacher, carries this hook too
            calls[0] += 1
            if calls[0] == stop_at:
                raise _Stopped

    teacher.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_resume_restores_the_ema_state(tmp_path):
    data = sd3_data(16)
    plan = Plan.for_model(tiny_sd3(num_layers=3), ["joint.0"])
    cfg = DistillConfig(steps=6, batch_size=4, lr=1e-2, checkpoint_every=2, ema_decay=0.9)
    whole = distill(tiny_sd3(num_layers=3), plan, data, cfg, tmp_path / "whole", progress=False)
    # stopped in step 3: the checkpoint after step 2 is the latest, step 2's progress is lost
    teacher = tiny_sd3(num_layers=3)
    _count_teacher_calls(teacher, stop_at=4)
    with pytest.raises(_Stopped):
        distill(teacher, plan, data, cfg, tmp_path / "stopped", progress=False)
    teacher = tiny_sd3(num_layers=3)
    calls = _count_teacher_calls(teacher)
    resumed = distill(teacher, plan, data, cfg, tmp_path / "stopped", resume=True, progress=False)
    assert calls[0] == cfg.steps - 2  # it resumed from the checkpoint, not from the start
    whole_params, resumed_params = dict(whole.named_parameters()), dict(resumed.named_parameters())
    assert whole_params.keys() == resumed_params.keys()
    assert all(torch.equal(whole_params[k], resumed_params[k]) for k in whole_params)


def test_sgdistill_without_sensitivity_is_one_sentence(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hprune", "distill", "--teacher", "x", "--plan", "p.json",
                             "--out", str(tmp_path / "o"), "--sgdistill"], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--sensitivity" in result.stderr


def test_losses_go_to_tensorboard_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    teacher, data = tiny_sd3(num_layers=3), sd3_data(8)
    plan = Plan.for_model(teacher, ["joint.0"])
    distill(teacher, plan, data, DistillConfig(steps=2, batch_size=2), tmp_path / "o", progress=False)
    assert list((tmp_path / "o" / "tensorboard").glob("events.out.tfevents.*"))


def test_each_step_reaches_the_board_under_its_own_step_with_the_loss_csv_value(tmp_path, monkeypatch):
    # the losses are read a step late (hprune.distill.readback): the board must still get each under its step
    import hprune.distill.loop as loop

    scalars = []

    class Board:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, step, value))

        def close(self):
            pass

    monkeypatch.setattr(loop, "_tensorboard", lambda out: Board())
    teacher, data = tiny_sd3(num_layers=3), sd3_data(8)
    distill(teacher, Plan.for_model(teacher, ["joint.0"]), data, DistillConfig(steps=3, batch_size=2), tmp_path / "o",
            progress=False)
    rows = list(csv.DictReader((tmp_path / "o" / "loss.csv").open()))
    expected = [(f"distill/{k}", int(r["step"]), float(r[k])) for r in rows for k in ("loss", "kd", "feat")]
    assert [(t, s) for t, s, _ in scalars] == [(t, s) for t, s, _ in expected]
    assert all(v == pytest.approx(e, rel=1e-6) for (_, _, v), (_, _, e) in zip(scalars, expected))


def test_a_failing_step_still_leaves_the_row_of_the_step_before(tmp_path, monkeypatch):
    # rows are written a step late (hprune.distill.readback): a failure must not swallow the last good one
    import hprune.distill.loop as loop

    kd_loss, calls = loop.kd_loss, []

    def failing_at_step_2(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("step 2 fails")
        return kd_loss(*args)

    monkeypatch.setattr(loop, "kd_loss", failing_at_step_2)
    teacher, data = tiny_sd3(num_layers=3), sd3_data(8)
    with pytest.raises(RuntimeError, match="step 2 fails"):
        distill(teacher, Plan.for_model(teacher, ["joint.0"]), data, DistillConfig(steps=4, batch_size=2),
                tmp_path / "o", progress=False)
    assert [r["step"] for r in csv.DictReader((tmp_path / "o" / "loss.csv").open())] == ["0", "1"]


def _adamw(device):
    from hprune.distill.loop import _optimizer

    weight = torch.nn.Parameter(torch.zeros(4, device=device))
    return _optimizer([{"params": [weight]}], DistillConfig(steps=1))


def test_adamw_stays_unfused_on_the_cpu():
    assert not _adamw("cpu").defaults["fused"]


@pytest.mark.gpu
def test_adamw_is_fused_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    assert _adamw("cuda").defaults["fused"]


def test_a_resumed_optimizer_keeps_this_runs_kernel_choice():
    from hprune.distill.loop import _keep_kernel

    weight = torch.nn.Parameter(torch.zeros(4))
    old = torch.optim.AdamW([weight], foreach=True)  # the run that wrote the checkpoint chose otherwise
    weight.grad = torch.ones(4)
    old.step()
    new = _adamw("cpu")
    new.param_groups[0]["params"] = [weight]
    new.load_state_dict(old.state_dict())
    assert new.param_groups[0]["foreach"] is True  # what load_state_dict restores
    _keep_kernel(new)
    assert new.param_groups[0]["foreach"] is new.defaults["foreach"] and new.param_groups[0]["fused"] is new.defaults["fused"]
