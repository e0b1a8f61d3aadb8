import json

import pytest
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from hprune.cli import main
from hprune.metrics import Metric, register_metric
from hprune.model.testing import tiny_pipeline


class Redness(Metric):
    name = "redness"
    components = ("red", "green")
    primary, alignment = "red", "green"

    def score(self, images, prompts, scenes=None):
        x = images.reshape(len(images), -1, 3) / 255.0
        return {"red": x[..., 0].mean(1), "green": x[..., 1].mean(1)}


register_metric("redness", lambda arg, device: Redness())


@pytest.fixture(autouse=True)
def library_bars_back_on():
    yield  # --no-progress turns them off for the process; the next test gets them back
    diffusers_logging.enable_progress_bar()
    transformers_logging.enable_progress_bar()


def profile_args(folder, prompts, out, *extra):
    return ["profile", str(folder), "--metric", "redness", "--prompts", str(prompts), "--steps", "2", "--size", "16",
            "--max-sequence-length", "16", "--out", str(out), "--no-progress", *extra]


def test_profile_command_on_a_saved_pipeline_then_resume(tmp_path, capsys):
    tiny_pipeline("flux").save_pretrained(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a red circle\n" + json.dumps({"prompt": "a blue square", "seed": 7}) + "\n")
    out = tmp_path / "run"
    assert main(profile_args(tmp_path / "pipe", tmp_path / "prompts.txt", out, "--scope", "blocks")) == 0
    shown = capsys.readouterr()
    assert "variants in" in shown.out
    assert "Loading pipeline components" not in shown.err  # --no-progress: diffusers' loading bar too
    rows = [json.loads(l) for l in (out / "contribution.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["joint.0.block", "joint.1.block", "single.0.block", "single.1.block", "single.2.block"]
    assert json.loads((out / "prompts.jsonl").read_text().splitlines()[1]) == {"prompt": "a blue square", "seed": 7}
    saved = json.loads((out / "config.json").read_text())
    assert saved["settings"]["metric"] == "redness" and "versions" in saved and saved["command"]
    # Same command with --pairs: the done rows stay, the pairs are added.
    assert main(profile_args(tmp_path / "pipe", tmp_path / "prompts.txt", out, "--pairs")) == 0
    more = [json.loads(l) for l in (out / "contribution.jsonl").read_text().splitlines()]
    assert {r["variant"]: r for r in more}["joint.0.block"] == rows[0]
    assert any(len(r["units"]) == 2 for r in more)


def test_profile_command_errors_are_one_line(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model_index.json" in err and err.count("\n") == 1
    tiny_pipeline("sd3").save_pretrained(tmp_path / "pipe")
    assert main(profile_args(tmp_path / "pipe", tmp_path / "missing.txt", tmp_path / "run")) == 1
    assert "prompt file" in capsys.readouterr().err
    (tmp_path / "prompts.txt").write_text("a red circle\n")
    assert main(profile_args(tmp_path / "pipe", tmp_path / "prompts.txt", tmp_path / "run", "--metric", "clip:/no/such")) == 1
    assert "clip weights folder /no/such does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "a failed start leaves nothing behind"


def _save_tiny_clip(folder):
    """tests/metrics/test_clip.py's random-weight CLIP, saved as a real one is."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_tiny_clip", Path(__file__).parents[1] / "metrics" / "test_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.save_tiny_clip(folder)


def _error(capsys) -> str:
    """The one error line (after the loading bars), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and [l for l in err.splitlines() if l.startswith("error: ")] == [err.splitlines()[-1]], err
    return err.splitlines()[-1]


def test_a_real_pipeline_says_which_size_and_metric_it_takes(tmp_path, capsys):
    """Issue #22, item 5: a tiny real SD3 pipeline folder (pos_embed_max_size 16, patch 2,
    VAE factor 1: at most 32 px) with a size too big, then with the default shapes metric:
    one sentence each and nothing written; with a local CLIP folder it profiles."""
    tiny_pipeline("sd3").save_pretrained(tmp_path / "pipe")
    capsys.readouterr()
    out = tmp_path / "run"
    base = ["profile", str(tmp_path / "pipe"), "--n-prompts", "2", "--steps", "1", "--scope", "blocks",
            "--no-progress", "--out", str(out)]
    assert main(base + ["--size", "64", "--metric", "redness"]) == 1
    assert _error(capsys) == ("error: --size 64 is too big for this model: its pos_embed_max_size 16 "
                              "allows at most --size 32.")
    assert main(base + ["--size", "31", "--metric", "redness"]) == 1
    assert "must be a multiple of 2" in _error(capsys)
    assert main(base) == 1
    assert "--metric clip:/path/to/clip or hps:/path/to/hps" in _error(capsys)
    assert not out.exists(), "a refused start leaves nothing behind"
    clip = _save_tiny_clip(tmp_path / "clip")
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    assert main(base + ["--size", "32", "--metric", f"clip:{clip}", "--prompts", str(tmp_path / "prompts.txt"),
                        "--max-sequence-length", "16"]) == 0
    rows = [json.loads(l) for l in (out / "contribution.jsonl").read_text().splitlines()]
    assert rows and all(r["variant"].endswith(".block") and r["metric"] == "clip" for r in rows)


def test_profile_shows_progress_and_ctrl_c_exits_130_with_nothing_half_written(tmp_path):
    """Issue #22, item 9: the reference and the variants show a progress line; Ctrl-C
    prints one line, exits 130, leaves no temporary or half-written file, and the same
    command resumes to the whole table."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "hprune", "profile", "shapes-sd3", "--n-prompts", "2", "--batch-size", "2",
            "--steps", "2", "--scope", "blocks", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # as in a terminal: a suite started in the background (`cmd &`) ignores SIGINT, and children inherit that
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (out / "contribution.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert err.rstrip("\n").split("\n")[-1] == "interrupted; re-run the same command to resume."
    assert "Traceback" not in err
    assert "reference:" in err and "profile:" in err, "the reference and the variants show progress"
    names = [p.name for p in out.iterdir()]
    assert not [n for n in names if ".tmp" in n], names
    assert "reference.npz" in names
    done = subprocess.run(argv + ["--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(l) for l in (out / "contribution.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["variant"] for r in rows}) == 16  # 15 units + the last block, skip-only


@pytest.mark.parametrize("flag", ["--n-prompts", "--steps"])
@pytest.mark.parametrize("fast", [[], ["--fast"]])
def test_zero_prompts_or_steps_is_refused_not_replaced_by_the_default(tmp_path, capsys, flag, fast):
    out = tmp_path / "run"
    assert main(["profile", "shapes-sd3", flag, "0", *fast, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert flag in err and "must be at least 1" in err and not out.exists()
