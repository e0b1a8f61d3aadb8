"""`hprune run` end to end on a tiny real SD3 pipeline: stages, resume after kill -9, status."""

import functools
import json
import signal
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


def test_a_w4fp8_run_rounds_by_gptq_on_the_analysis_prompts(tiny_run_inputs, tmp_path):
    import hprune
    from hprune.core.provenance import steps_of

    out = tmp_path / "run"
    assert _run(*tiny_run_inputs, out, "--set", "quantize.backend=w4fp8") == 0
    assert "w4fp8 (GPTQ rounding)" in (out / "stages" / "quantize.json").read_text()
    step = steps_of(hprune.load(out / "model"), "quantize")[-1]
    assert step["config"]["rounding"] == "gptq" and step["calibration"]["images"] == 64


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


def test_show_recipe_prints_what_the_run_saved(finished, tiny_run_inputs, capsys):
    pipe, recipe = tiny_run_inputs
    assert main(["run", str(pipe), "--ratio", "0.3", "--recipe", str(recipe), "--show-recipe"]) == 0
    shown = capsys.readouterr().out
    assert shown == (finished / "recipe.toml").read_text() and "\nalpha = 0.55\n" in shown


def test_a_run_resumed_with_its_saved_recipe_keeps_the_recipe_name(finished, tiny_run_inputs, tmp_path, capsys):
    pipe, _ = tiny_run_inputs
    assert _run(pipe, finished / "recipe.toml", finished) == 0
    assert "(recipe tiny, " in capsys.readouterr().out
    out = tmp_path / "again"  # a new folder from the saved recipe: run.json names the source recipe too
    assert _run(pipe, finished / "recipe.toml", out, "--set", "analysis.metric=clip:/nowhere") == 1
    assert json.loads((out / "run.json").read_text())["recipe"] == "tiny"


def test_status_counts_what_a_stopped_stage_finished(finished, tmp_path, capsys):
    import shutil

    def status_of(stage):
        assert main(["run", "--status", str(out)]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"  {stage} "))

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for stage in ("report", "evaluate"):
        (out / "stages" / f"{stage}.json").unlink()
    (out / "samples" / "distilled" / "scores.json").unlink()
    assert "2 of 3 variants scored (4 of 6 images)" in status_of("evaluate")
    (out / "stages" / "generate.json").unlink()
    shutil.rmtree(out / "samples" / "distilled")
    assert "2 of 3 variants drawn (4 of 6 images)" in status_of("generate")
    for stage in ("quantize", "distill"):
        (out / "stages" / f"{stage}.json").unlink()
    log = out / "distill" / "loss.csv"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:3]))  # the header and steps 0, 1
    assert "2 of 4 steps trained, checkpoint at step 2" in status_of("distill")


def test_a_changed_setting_is_refused_naming_it(finished, tiny_run_inputs, capsys):
    assert _run(*tiny_run_inputs, finished, "--set", "distill.steps=5") == 1
    err = capsys.readouterr().err
    assert "distill.steps = 4 -> distill.steps = 5" in err and err.count("\n") == 1


def _args(pipe, recipe, out):
    return ["run", pipe, "--ratio", "0.3", "--recipe", recipe, "--out", out, "--no-progress"]


def _kill_when(process, ready, timeout=300):
    """SIGKILL the started `process` as soon as `ready()` is true; returns whether it was killed mid-run."""
    deadline = time.time() + timeout
    while process.is_alive() and time.time() < deadline:
        if ready():
            process.kill()
            process.join()
            return True
        time.sleep(0.05)
    process.join()
    return False


# Files that show a stage is under way: a kill then lands inside it (the analysis resumes by
# variant, the distillation from its checkpoint, the generation by variant).
INSIDE = {"analysis": lambda out: (out / "analysis" / "contribution.jsonl").is_file(),
          "distill": lambda out: (out / "distill" / "checkpoints").is_dir(),
          "generate": lambda out: (out / "samples" / "teacher").is_dir()}


@pytest.mark.slow
def test_kill_9_in_and_after_every_stage_then_resume_gives_the_same_numbers(finished, tiny_run_inputs, tmp_path,
                                                                           start_run):
    """One process after another on one folder, each resuming what the last left: killed inside the
    stages that resume part-way, and after every stage's output is written but before its marker
    (HPRUNE_TEST_KILL_AT). A last run finishes it with the uninterrupted run's numbers."""
    from hprune.folders.run_layout import STAGES
    from hprune.runs.runner import KILL_AT

    pipe, recipe = tiny_run_inputs
    out = tmp_path / "run"
    for stage in STAGES:
        if stage in INSIDE:
            killed = _kill_when(start_run(_args(pipe, recipe, out)), functools.partial(INSIDE[stage], out))
            assert killed, f"the run finished before it was inside {stage}"
        process = start_run(_args(pipe, recipe, out), {KILL_AT: f"{stage}:end"})
        process.join(300)
        assert process.exitcode == -signal.SIGKILL, (stage, process.exitcode)
        assert not (out / "stages" / f"{stage}.json").exists(), stage
    assert _run(pipe, recipe, out) == 0
    for made in ("scores.json", "plan/plan.json", "memory.json"):
        assert json.loads((out / made).read_text()) == json.loads((finished / made).read_text()), made


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


@pytest.mark.parametrize("damage", ["{broken", "[]", '{"model": "shapes-sd3"}'])
def test_a_damaged_run_json_is_one_sentence_for_status_and_resume(finished, tmp_path, capsys, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "run.json").write_text(damage)
    for argv in (["run", "--status", str(run)], ["run", "shapes-sd3", "--ratio", "0.2", "--out", str(run)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.strip() == f"error: {run / 'run.json'} is damaged (it is the record `hprune run` writes first); " \
                              "restore it, or start over in a new --out folder.", err


def test_a_key_added_by_a_newer_hprune_is_no_change_at_its_default():
    """Resuming a run whose recipe.toml predates a key: the key at its default is the run's own
    setting; set to something else, the refusal names it in words, not as 'distill.absent'."""
    from hprune.runs.recipe import load_recipe, to_toml
    from hprune.runs.runner import _changed_lines

    saved = to_toml(load_recipe("shapes-cpu"))
    older = "\n".join(line for line in saved.splitlines() if "ema_decay" not in line)
    assert older != saved
    assert _changed_lines(older, saved) == []
    changed = to_toml(load_recipe("shapes-cpu", ["distill.ema_decay=0.99"]))
    [(before, after)] = _changed_lines(older, changed)
    assert before == "distill.ema_decay unset (the run's recipe.toml predates it)" and after == "distill.ema_decay = 0.99"
    [(before, after)] = _changed_lines(saved, changed)
    assert before == "distill.ema_decay = (none)" and after == "distill.ema_decay = 0.99"


def test_a_resume_refusal_points_at_the_runs_own_recipe_and_a_lost_recipe_is_named(tmp_path):
    from hprune.core.errors import HpruneError
    from hprune.folders.run_layout import RunLayout
    from hprune.runs.recipe import load_recipe, to_toml
    from hprune.runs.runner import _check_same

    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    info = {"model": "shapes-sd3", "ratio": 0.2, "recipe": "shapes-cpu", "quant": None}
    layout.info.write_text(json.dumps({**info, "family": "sd3"}))
    layout.recipe.write_text(to_toml(load_recipe("shapes-cpu", ["distill.steps=100"])))
    with pytest.raises(HpruneError, match=r"distill.steps = 100 -> distill.steps = \d+.*add --recipe .*recipe.toml"):
        _check_same(layout, info, to_toml(load_recipe("shapes-cpu")))
    layout.recipe.write_text("")
    with pytest.raises(HpruneError, match="recipe.toml is missing or empty"):
        _check_same(layout, info, to_toml(load_recipe("shapes-cpu")))


def test_recipe_values_are_compared_as_values_not_text():
    from hprune.runs.recipe import load_recipe, to_toml
    from hprune.runs.runner import _changed_lines

    saved = to_toml(load_recipe("shapes-cpu"))
    edited = saved.replace("lr = 0.0001", "lr=1e-4")
    assert edited != saved and _changed_lines(edited, saved) == []
    assert _changed_lines(saved.replace("lr = 0.0001", "lr = 0.001"), saved) == [("distill.lr = 0.001", "distill.lr = 0.0001")]
