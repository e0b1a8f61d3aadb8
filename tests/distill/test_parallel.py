"""Distillation on two processes (gloo on CPU, `accelerate launch`): the same loss curve and
weights as one process, with DDP and with FSDP2, and a run stopped after a checkpoint on two
processes resumes on two, or on one, to the same result."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hprune.cli import main
from hprune.distill import DistillConfig, distill
from hprune.distill.data import draw_batch
from hprune.distill.parallel import local_slice
from hprune.core.errors import HpruneError
from hprune.model.testing import tiny_sd3
from parallel_worker import STUDENT, config, plan
from test_loop import sd3_data

WORKER = Path(__file__).with_name("parallel_worker.py")
STRATEGIES = ("ddp", "fsdp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(root: Path) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --multi_gpu selects torchrun's local launcher; without a GPU each process takes the CPU and gloo
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(WORKER), str(root), ",".join(STRATEGIES)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _curve(run: Path) -> torch.Tensor:
    rows = list(csv.DictReader((run / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(len(rows)))
    return torch.tensor([[float(r[k]) for k in ("loss", "kd", "feat")] for r in rows], dtype=torch.float64)


def _same_run(run: Path, reference: Path) -> None:
    torch.testing.assert_close(_curve(run), _curve(reference), rtol=1e-5, atol=1e-9)
    got, want = load_file(str(run / STUDENT)), load_file(str(reference / STUDENT))
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)


def _one_process(out: Path, data, resume=False) -> None:
    student = distill(tiny_sd3(num_layers=4), plan(), data, config("ddp"), out, resume=resume, progress=False)
    from safetensors.torch import save_file

    save_file(student.state_dict(), str(out / STUDENT))


@pytest.mark.slow
def test_two_processes_follow_one_and_resume_on_two_or_one(tmp_path):
    _launch_two(tmp_path)
    data = sd3_data(16)
    _one_process(tmp_path / "one", data)
    for strategy in STRATEGIES:
        summary = json.loads((tmp_path / f"{strategy}-whole" / "training_summary.json").read_text())
        assert summary["processes"] == 2 and summary["sharded"] == (strategy == "fsdp")
        _same_run(tmp_path / f"{strategy}-whole", tmp_path / "one")
        resumed = json.loads((tmp_path / f"{strategy}-stopped" / "training_summary.json").read_text())
        assert resumed["resumed_from"] == 4 and resumed["processes"] == 2
        _same_run(tmp_path / f"{strategy}-stopped", tmp_path / "one")
        # the checkpoint two processes wrote, resumed on one
        _one_process(tmp_path / f"{strategy}-stopped-for-one", data, resume=True)
        _same_run(tmp_path / f"{strategy}-stopped-for-one", tmp_path / "one")


def test_each_process_trains_on_its_slice_of_the_global_batch():
    data = sd3_data(16)
    whole = draw_batch(data, 8, seed=0, step=3)

    class Two:
        num_processes = 2

        def __init__(self, index):
            self.process_index = index

    parts = [local_slice(whole, Two(i)) for i in range(2)]
    for key in ("x0", "seq", "pooled", "noise", "sigma"):
        assert torch.equal(torch.cat([getattr(p, key) for p in parts]), getattr(whole, key))


def test_config_refuses_unknown_strategy_and_fsdp_with_ema():
    with pytest.raises(HpruneError, match="--strategy must be one of"):
        DistillConfig(strategy="zero3")
    with pytest.raises(HpruneError, match="--ema-decay works with --strategy ddp only"):
        DistillConfig(strategy="fsdp", ema_decay=0.99)


def test_adamw8bit_is_refused_up_front_without_bitsandbytes_or_a_gpu(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(HpruneError, match=r"--optimizer adamw8bit needs the bitsandbytes package .* CUDA GPU"):
        DistillConfig(optimizer="adamw8bit")


def test_out_of_memory_is_one_sentence_naming_the_knobs(tmp_path, monkeypatch, capsys):
    from hprune.commands import distill as command

    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(command, "run", out_of_memory)
    code = main(["distill", "--teacher", "x", "--plan", "p.json", "--out", str(tmp_path / "o"),
                 "--batch-size", "4", "--gradient-checkpointing"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "ran out of memory" in err and "lower --batch-size (now 4)" in err and "--optimizer adamw8bit" in err
    assert "add --gradient-checkpointing" not in err  # already on
    assert "accelerate launch --num_processes N" in err


def test_fragmented_out_of_memory_names_expandable_segments_in_one_sentence(tmp_path, monkeypatch, capsys):
    from hprune.commands import distill as command

    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 216.00 MiB. ... Of the allocated memory "
                                          "125.18 GiB is allocated by PyTorch, and 12.94 GiB is reserved by PyTorch but unallocated.")

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setattr(command, "run", out_of_memory)
    code = main(["distill", "--teacher", "x", "--plan", "p.json", "--out", str(tmp_path / "o"), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "expandable_segments:True" in err and "lower --batch-size (now 2)" in err


def test_synthetic_data_has_the_models_shapes():
    from hprune.distill.synthetic import synthetic_data

    model = tiny_sd3(num_layers=2)
    data = synthetic_data(model, 3, channels=4, side=8, seed=1)
    assert data.x0.shape == (3, 4, 8, 8) and data.seq.shape == (3, 333, 32) and data.pooled.shape == (3, 16)
    assert torch.equal(synthetic_data(model, 3, 4, 8, seed=1).seq, data.seq)
    with pytest.raises(HpruneError, match="--synthetic-data must be at least 1"):
        synthetic_data(model, 0, 4, 8)
