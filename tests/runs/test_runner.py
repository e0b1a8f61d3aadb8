"""`hprune run` end to end on a tiny real SD3 pipeline: stages, resume after kill -9, status."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hprune.cli import main


def _run(pipe, recipe, out, *extra):
    return main(["run", str(pipe), "--ratio", "0.3", "--recipe", str(recipe), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def finished(tiny_run_inputs, tmp_path_factory):
    pipe, recipe = tiny_run_inputs
    out = tmp_path_factory.mktemp("run") / "run"
    assert _run(pipe, recipe, out) == 0
    return out


def test_a_run_writes_every_stage_and_a_loadable_model(finished):
    import hprune

    for stage in ("analysis", "plan", "prune", "distill", "quantize", "generate", "evaluate", "report"):
        assert (finished / "stages" / f"{stage}.json").is_file(), stage
    scores = json.loads((finished / "scores.json").read_text())
    assert [v["name"] for v in scores["variants"]] == ["teacher", "pruned", "distilled"]
    assert scores["variants"][0]["degradation"] is None
    assert all(isinstance(v["degradation"], float) for v in scores["variants"][1:])
    pipe = hprune.load_pipeline(finished / "model")
    assert len(pipe.transformer.transformer_blocks) <= 4
    assert (finished / "report.html").stat().st_size > 1000


def test_a_finished_run_reruns_as_a_no_op(finished, tiny_run_inputs, capsys):
    before = (finished / "scores.json").read_text()
    assert _run(*tiny_run_inputs, finished) == 0
    out = capsys.readouterr().out
    assert out.count("done earlier") == 8
    assert (finished / "scores.json").read_text() == before


def test_status_names_every_stage(finished, capsys):
    assert main(["run", "--status", str(finished)]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 8


def test_a_changed_setting_is_refused_naming_it(finished, tiny_run_inputs, capsys):
    assert _run(*tiny_run_inputs, finished, "--set", "distill.steps=5") == 1
    err = capsys.readouterr().err
    assert "distill.steps = 4 -> distill.steps = 5" in err and err.count("\n") == 1


def _kill_when(cmd, ready, timeout=300):
    """Start `cmd`, SIGKILL it as soon as `ready()` is true; returns whether it was killed mid-run."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.wait()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("point", ["analysis", "distill", "generate"])
def test_kill_9_then_resume_gives_the_same_numbers(point, finished, tiny_run_inputs, tmp_path):
    pipe, recipe = tiny_run_inputs
    out = tmp_path / "run"
    ready = {"analysis": lambda: (out / "analysis" / "contribution.jsonl").is_file(),
             "distill": lambda: (out / "distill" / "checkpoints").is_dir(),
             "generate": lambda: (out / "samples" / "teacher").is_dir()}[point]
    cmd = [sys.executable, "-m", "hprune", "run", str(pipe), "--ratio", "0.3", "--recipe", str(recipe),
           "--out", str(out), "--no-progress"]
    assert _kill_when(cmd, ready), f"the run finished before reaching {point}"
    assert not (out / "stages" / "report.json").exists()
    assert _run(pipe, recipe, out) == 0
    got, want = (json.loads((d / "scores.json").read_text()) for d in (out, finished))
    assert got == want


def test_a_whole_block_run_loads_with_plain_diffusers(tiny_run_inputs, tmp_path):
    from diffusers import DiffusionPipeline

    pipe, recipe = tiny_run_inputs
    out = tmp_path / "run"
    # Blocks alone (scope blocks) and a tolerance wide enough for whole blocks to land in it.
    assert main(["run", str(pipe), "--ratio", "0.15", "--recipe", str(recipe), "--out", str(out), "--no-progress",
                 "--set", "analysis.scope=blocks", "--set", "plan.r_thres=0.9", "--set", "plan.tolerance=0.14", "--set", "data.source=none"]) == 0
    plan = json.loads((out / "plan" / "plan.json").read_text())
    assert plan["units"] and all(u.endswith(".block") for u in plan["units"])
    assert not (out / "samples" / "distilled").exists()
    loaded = DiffusionPipeline.from_pretrained(out / "model")
    assert len(loaded.transformer.transformer_blocks) == 4 - len(plan["units"])


def test_memory_has_gpu_numbers_only_with_a_gpu(finished):
    import torch

    memory = json.loads((finished / "memory.json").read_text())
    assert memory["teacher"]["weight_bytes"] > memory["compressed"]["weight_bytes"] > 0
    assert (memory["bench"] is not None) == torch.cuda.is_available()
