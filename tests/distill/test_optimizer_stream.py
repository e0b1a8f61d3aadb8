"""hprune.distill.optimizer_stream: the optimizer step beside the next teacher forward, same results."""

import json

import pytest
import torch

import hprune.distill.loop as loop
from hprune.distill import DistillConfig, distill
from hprune.distill.data import DistillData
from hprune.distill.optimizer_stream import OptimizerStream
from hprune.model.testing import tiny_sd3
from hprune.planning.plan import Plan


def test_without_a_gpu_the_step_runs_inline_and_wait_is_free():
    calls = []
    side = OptimizerStream(torch.device("cpu"))
    side.run(lambda: calls.append("step"), [])
    side.wait()
    assert side.stream is None and calls == ["step"]


def test_on_cpu_the_summary_says_no_optimizer_stream_was_used(tmp_path):
    _, _, summary = _distill(tmp_path, True, "cpu", steps=2)
    assert summary["optimizer_stream"] is False


def _distill(tmp_path, overlap: bool, device: str, steps=4):
    torch.manual_seed(0)
    teacher = tiny_sd3(num_layers=5).to(device)
    g = torch.Generator().manual_seed(0)
    data = DistillData(torch.randn(16, 4, 8, 8, generator=g), torch.randn(16, 6, 32, generator=g),
                       torch.randn(16, 16, generator=g))
    cfg = DistillConfig(steps=steps, batch_size=4, lr=1e-3, pwp=True, overlap_optimizer=overlap, checkpoint_every=2,
                        ema_decay=0.9)
    run = tmp_path / str(overlap)
    student = distill(teacher, Plan.for_model(teacher, ["joint.2", "joint.4.mlp"]), data, cfg, run, progress=False)
    loss = (run / "loss.csv").read_text()
    return student, loss, json.loads((run / "training_summary.json").read_text())


@pytest.mark.gpu
def test_on_a_gpu_the_overlapped_step_gives_the_serial_loss_and_weights_bit_for_bit(tmp_path, monkeypatch):
    streams = []
    run = OptimizerStream.run

    def spy(self, step, params):
        streams.append(self.stream)
        return run(self, step, params)

    monkeypatch.setattr(OptimizerStream, "run", spy)
    update = loop._update

    def slow_update(*args):  # a missing wait would let the student's forward read stale weights
        torch.cuda._sleep(10**8)  # about 50 ms on the stream the update runs on
        update(*args)

    monkeypatch.setattr(loop, "_update", slow_update)
    overlapped, loss, summary = _distill(tmp_path, True, "cuda")
    assert streams and all(s is not None for s in streams)  # the side stream really ran the steps
    assert summary["optimizer_stream"] is True
    streams.clear()
    serial, serial_loss, serial_summary = _distill(tmp_path, False, "cuda")
    assert streams and all(s is None for s in streams) and serial_summary["optimizer_stream"] is False
    assert loss == serial_loss
    assert all(torch.equal(a, b) for a, b in zip(overlapped.parameters(), serial.parameters()))
