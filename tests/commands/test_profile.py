import json


from hprune.cli import main
from hprune.metrics import Metric, register_metric
from hprune.testing import tiny_pipeline


class Redness(Metric):
    name = "redness"
    components = ("red", "green")
    primary, alignment = "red", "green"

    def score(self, images, prompts, scenes=None):
        x = images.reshape(len(images), -1, 3) / 255.0
        return {"red": x[..., 0].mean(1), "green": x[..., 1].mean(1)}


register_metric("redness", lambda arg, device: Redness())


def profile_args(folder, prompts, out, *extra):
    return ["profile", str(folder), "--metric", "redness", "--prompts", str(prompts), "--steps", "2", "--size", "16",
            "--max-sequence-length", "16", "--out", str(out), "--no-progress", *extra]


def test_profile_command_on_a_saved_pipeline_then_resume(tmp_path, capsys):
    tiny_pipeline("flux").save_pretrained(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a red circle\n" + json.dumps({"prompt": "a blue square", "seed": 7}) + "\n")
    out = tmp_path / "run"
    assert main(profile_args(tmp_path / "pipe", tmp_path / "prompts.txt", out, "--scope", "blocks")) == 0
    assert "variants in" in capsys.readouterr().out
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
