"""`hprune run`'s bad input: one sentence, exit 1, nothing written."""

import json

import pytest

from hprune.cli import main


def _fails(capsys, args, *needles):
    assert main(["run", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def out(tmp_path):
    return tmp_path / "run"


def test_a_model_that_is_neither_a_teacher_nor_a_pipeline(tmp_path, out, capsys):
    _fails(capsys, [str(tmp_path / "nowhere"), "--out", str(out)], "neither a shipped teacher")
    assert not out.exists()


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.2"])
def test_a_ratio_outside_0_1(ratio, out, capsys):
    _fails(capsys, ["shapes-sd3", "--ratio", ratio, "--out", str(out)], "--ratio")
    assert not out.exists()


def test_a_recipe_key_that_does_not_exist_names_the_closest(out, capsys):
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--set", "distill.step=3"], "did you mean 'distill.steps'")
    assert not out.exists()


def test_a_recipe_file_with_an_unknown_key(tmp_path, out, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[plan]\nr_thres = 0.1\nalpah = 0.5\n")
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--recipe", str(recipe)], "plan.alpah", "plan.alpha")


def test_a_recipe_for_another_family(out, capsys):
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--recipe", "flux.1-schnell"], "made for flux", "sd3 recipe")
    assert not out.exists()


def test_a_missing_gpu_when_the_recipe_needs_one(out, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--recipe", "shapes-full"], "needs a CUDA GPU")
    assert not out.exists()


def test_a_real_pipeline_without_metric_weights(tiny_run_inputs, out, capsys):
    pipe, _ = tiny_run_inputs
    _fails(capsys, [str(pipe), "--out", str(out)], "--set analysis.metric=clip:")
    assert not out.exists()


def test_a_real_pipeline_scored_with_the_shapes_metric(tiny_run_inputs, out, capsys):
    pipe, recipe = tiny_run_inputs
    _fails(capsys, [str(pipe), "--recipe", str(recipe), "--out", str(out), "--set", "evaluate.metric=shapes"],
           "set evaluate.metric to a metric with local weights")
    assert not out.exists()


def test_an_image_folder_without_captions(tiny_run_inputs, tmp_path, out, capsys):
    from PIL import Image

    pipe, recipe = tiny_run_inputs
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16)).save(images / "a.png")
    _fails(capsys, [str(pipe), "--recipe", str(recipe), "--out", str(out), "--set", f"data.source={images}"],
           "has no caption", "metadata.jsonl")
    assert not out.exists()


def test_an_output_folder_holding_a_run_of_another_model(tmp_path, out, capsys):
    (out / "stages").mkdir(parents=True)
    (out / "stages" / "analysis.json").write_text("{}")  # a stage finished: the folder is pinned
    (out / "run.json").write_text(json.dumps({"model": "shapes-flux", "ratio": 0.2, "quant": "none", "recipe": "shapes-cpu"}))
    (out / "recipe.toml").write_text("")
    _fails(capsys, ["shapes-sd3", "--out", str(out)], "'shapes-flux' -> 'shapes-sd3'")
    assert sorted(p.name for p in out.iterdir()) == ["recipe.toml", "run.json", "stages"]


def test_a_run_that_failed_before_any_stage_finished_does_not_lock_its_folder(tiny_run_inputs, out, capsys):
    pipe, recipe = tiny_run_inputs
    bad = ["run", str(pipe), "--recipe", str(recipe), "--out", str(out), "--no-progress",
           "--set", "plan.r_thres=0.9", "--set", "analysis.metric=clip:/nowhere"]
    from hprune.cli import main as cli

    assert cli(bad) == 1
    capsys.readouterr()
    settings = json.loads((out / "run.json").read_text())
    assert settings["model"] == str(pipe)
    # the corrected command starts over in place instead of "holds a run with other settings"
    assert cli(bad[:-2] + ["--set", "data.source=none"]) == 0, capsys.readouterr().err
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("item, needle", [("data.source=shapes:abc", "positive number"),
                                          ("data.source=teacher:0", "positive number"),
                                          ("data.source=bogus.safetensors", "does not exist"),
                                          ("plan.r_thres=5", "plan.r_thres"),
                                          ("evaluate.per_category=0", "evaluate.per_category"),
                                          ("evaluate.metric=nosuch", "evaluate.metric: metric 'nosuch' is unknown"),
                                          ("evaluate.metric=clip:/nowhere", "evaluate.metric: the clip metric needs")])
def test_settings_of_later_stages_are_checked_before_anything_runs(item, needle, out, capsys):
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--set", item], needle)
    assert not out.exists()


def test_an_output_folder_holding_something_else(tmp_path, out, capsys):
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--set", "analysis.n_prompts=1"], "not empty")


def test_status_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    _fails(capsys, ["--status", str(tmp_path)], "not an `hprune run` folder")


def test_an_unknown_quant_backend(out, capsys):
    _fails(capsys, ["shapes-sd3", "--out", str(out), "--quant", "int3"], "not a backend")
    assert not out.exists()


def test_a_library_config_error_names_the_recipe_key(out, capsys):
    err = _fails(capsys, ["shapes-sd3", "--out", str(out), "--set", "distill.steps=0"],
                 "distill.steps must be at least 1", "--set distill.steps=")
    assert "--steps" not in err
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["shapes-sd3", "--recipe", "flux.1-schnell"], "made for flux"),
    (["shapes-sd3", "--ratio", "0.005"], "below plan.tolerance"),
    (["--quant", "int3"], "not a backend"),
    (["shapes-sd3", "--set", "data.source=teacher:0"], "positive number"),
])
def test_show_recipe_checks_the_recipe_as_a_run_would(args, needle, capsys):
    _fails(capsys, [*args, "--show-recipe"], needle)


def test_show_recipe_of_a_real_pipeline_without_metric_weights(tiny_run_inputs, capsys):
    pipe, _ = tiny_run_inputs
    _fails(capsys, [str(pipe), "--show-recipe"], "--set analysis.metric=clip:")


@pytest.mark.parametrize("model, alpha", [("shapes-sd3", "0.55"), ("shapes-flux", "0.01")])
def test_show_recipe_prints_the_family_alpha_of_the_model(model, alpha, capsys):
    assert main(["run", model, "--show-recipe"]) == 0
    out = capsys.readouterr().out
    assert f"[plan]\nalpha = {alpha}\n" in out and "(none)\nr_thres" not in out


def test_show_recipe_without_a_model_says_where_alpha_comes_from(capsys):
    assert main(["run", "--show-recipe"]) == 0
    assert "plan.alpha: the paper's value for the model's family (sd3 0.55, flux 0.01)" in capsys.readouterr().out
    flux_on_cpu = ["--recipe", "flux.1-schnell", "--set", "run.device=cpu", "--quant", "none"]
    assert main(["run", "--show-recipe", *flux_on_cpu]) == 0
    assert "[plan]\nalpha = 0.01\n" in capsys.readouterr().out  # the recipe names its family


def test_a_quant_backend_with_a_caution_is_noted_when_the_recipe_is_checked(capsys, monkeypatch):
    from hprune.quant import get_backend

    monkeypatch.setattr(get_backend("w4fp8"), "caution", "planted: w4fp8 is slow at one token.")
    assert main(["run", "shapes-sd3", "--quant", "w4fp8", "--show-recipe"]) == 0
    assert capsys.readouterr().err.count("note: planted: w4fp8 is slow at one token.") == 1


def test_a_run_that_fails_its_checks_says_no_caution_before_the_error(tmp_path, capsys, monkeypatch):
    from hprune.quant import get_backend

    monkeypatch.setattr(get_backend("w4fp8"), "caution", "planted: w4fp8 is slow at one token.")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "other.txt").write_text("not a run")
    err = _fails(capsys, ["shapes-sd3", "--quant", "w4fp8", "--out", str(tmp_path / "taken")], "not empty")
    assert "note:" not in err
