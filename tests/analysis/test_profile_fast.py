import json

import numpy as np
import pytest
import torch

import hprune.analysis.profile_fast as profile_fast_module
from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.analysis.profile import TABLE, ProfileConfig, profile, read_table, variants
from hprune.analysis.profile_fast import GRID_WEIGHT, PROXY, FastProfileConfig, profile_fast
from hprune.planning.scoring import load_run, plan_for_run
from hprune.model.testing import tiny_pipeline, tiny_sd3
from test_profile import Brightness  # registers the `brightness` metric

PROMPTS = ["a red circle", "a blue square", "the green triangle"]


def fast_config(tmp_path, **kw):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    base = dict(metric="brightness", prompts=str(tmp_path / "prompts.txt"), steps=3, size=16, max_sequence_length=16)
    return FastProfileConfig(**{**base, **kw})


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture(scope="module")
def sd3_pipe():
    return tiny_pipeline("sd3")


def test_config_defaults_and_validation():
    with pytest.raises(HpruneError, match="--steps must be at least 1"):
        FastProfileConfig(steps=0)
    config = FastProfileConfig()
    assert config.settings()["proxy"] == PROXY
    assert (config.metric, config.n_prompts, config.steps) == ("shapes", 8, None)
    assert (config.proxy_steps(8), config.proxy_steps(4), FastProfileConfig(steps=7).proxy_steps(4)) == (6, 4, 7)


def test_a_unit_that_changes_the_images_more_ranks_above_one_that_changes_them_less(tmp_path):
    model = tiny_sd3(num_layers=2)
    with torch.no_grad():
        model.transformer_blocks[0].ff.net[2].weight.zero_()  # removing joint.0.mlp changes nothing
        model.transformer_blocks[0].ff.net[2].bias.zero_()
        model.transformer_blocks[1].ff.net[2].weight.mul_(20)  # removing joint.1.mlp changes a lot
    rows = profile_fast(tiny_pipeline("sd3", transformer=model), fast_config(tmp_path, scope="subcomponents"),
                        tmp_path / "run", progress=False)
    score = {r["variant"]: r["dP"] for r in rows}
    assert score["joint.0.mlp"] == pytest.approx(0.0, abs=1e-6)
    assert score["joint.1.mlp"] > 10 * max(score["joint.0.mlp"], 1e-6)
    assert all(d >= 0 for r in rows for d in r["grid"])


def test_the_grid_distance_is_how_far_a_variant_moves_the_layout_and_colours():
    from hprune.analysis.profile_fast import GRID, grid_distance

    side = 8 * GRID
    fine = (np.indices((side, side)).sum(0) % 2 * 255).astype(np.uint8)  # pixel checkerboard
    reference = np.repeat(fine[None, :, :, None], 3, axis=3)
    flipped = 255 - reference  # every pixel changes, every cell keeps its mean colour
    moved = reference.copy()
    moved[:, : side // 2] = 0  # the top half turns black
    d = grid_distance(np.stack([flipped[0], moved[0]]), np.stack([reference[0], reference[0]]))
    assert d[0] == pytest.approx(0.0, abs=1e-9)
    assert d[1] == pytest.approx(np.sqrt(0.5 * 0.5 ** 2), abs=1e-6)  # half the cells, 0.5 -> 0


def test_the_score_is_the_metric_drop_plus_the_weighted_distance():
    from hprune.analysis.profile_fast import fast_row, grid_distance

    rng = np.random.default_rng(0)
    reference_images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    images = reference_images.copy()
    images[1:, :8] = 0
    metric = Brightness()
    reference, scores = metric.score(reference_images, PROMPTS), metric.score(images, PROMPTS)
    row = fast_row([], images, reference_images, reference, scores, metric, 1.0)
    drop = reference["bright"] - scores["bright"]
    assert row["dP_metric"] == pytest.approx(drop.mean())
    assert row["drops"]["red"] == pytest.approx((reference["red"] - scores["red"]).mean())  # bkscore's alignment drop
    assert row["dP"] == pytest.approx((drop + GRID_WEIGHT * grid_distance(images, reference_images)).mean())
    assert row["per_prompt"][0] == pytest.approx(0.0, abs=1e-9) and row["proxy"] == PROXY


def test_the_run_folder_plans_like_a_full_one(tmp_path, sd3_pipe, capsys):
    before = {k: v.clone() for k, v in sd3_pipe.transformer.state_dict().items()}
    rows = profile_fast(sd3_pipe, fast_config(tmp_path), tmp_path / "run", progress=False)
    assert all(torch.equal(before[k], v) for k, v in sd3_pipe.transformer.state_dict().items())
    assert [r["variant"] for r in rows] == ["+".join(u.key for u in v) for v in variants(sd3_pipe.transformer, every_block=True)]
    assert len(rows[0]["per_prompt"]) == 3 and rows[0]["n_prompts"] == 3
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["settings"]["proxy"] == PROXY and saved["settings"]["steps"] == 3
    run = load_run(tmp_path / "run")
    for method in ("hpp", "koala", "bkscore", "lastk"):  # every ranker reads the run, as a full one's
        assert plan_for_run(run, method, 0.3).units
    plan_file = tmp_path / "p.json"
    assert main(["plan", str(tmp_path / "run"), "--method", "hpp", "--ratio", "0.3", "--out", str(plan_file)]) == 0
    assert json.loads(plan_file.read_text())["units"] == [u.key for u in plan_for_run(run, "hpp", 0.3).units]


def test_an_interrupted_run_resumes_to_the_same_table(tmp_path, sd3_pipe, monkeypatch):
    whole = profile_fast(sd3_pipe, fast_config(tmp_path), tmp_path / "whole", progress=False)
    real, calls = profile_fast_module.fast_row, []

    def dies_on_the_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(profile_fast_module, "fast_row", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        profile_fast(sd3_pipe, fast_config(tmp_path), tmp_path / "cut", progress=False)
    monkeypatch.setattr(profile_fast_module, "fast_row", real)
    with open(tmp_path / "cut" / TABLE, "a") as f:
        f.write('{"variant": "joint.1.bl')  # a line half-written by kill -9
    assert len(read_table(tmp_path / "cut" / TABLE)) == 3
    resumed = profile_fast(sd3_pipe, fast_config(tmp_path), tmp_path / "cut", progress=False)
    assert without_seconds(resumed) == without_seconds(whole)


def test_a_full_run_folder_is_not_resumed_as_fast(tmp_path, sd3_pipe):
    full = ProfileConfig(metric="brightness", prompts=fast_config(tmp_path).prompts, steps=3, size=16,
                         max_sequence_length=16, scope="blocks")
    profile(sd3_pipe, full, tmp_path / "run", progress=False)
    with pytest.raises(HpruneError, match="other settings"):
        profile_fast(sd3_pipe, fast_config(tmp_path), tmp_path / "run", progress=False)


def test_profile_fast_command(tmp_path, capsys):
    tiny_pipeline("flux").save_pretrained(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    args = ["profile", str(tmp_path / "pipe"), "--fast", "--prompts", str(tmp_path / "prompts.txt"),
            "--steps", "2", "--size", "16", "--max-sequence-length", "16", "--scope", "blocks", "--no-progress"]
    assert main([*args, "--metric", "brightness", "--out", str(tmp_path / "run")]) == 0
    assert "variants in" in capsys.readouterr().out
    rows = read_table(tmp_path / "run" / TABLE)
    assert [r["variant"] for r in rows] == ["joint.0.block", "joint.1.block", "single.0.block", "single.1.block",
                                            "single.2.block"]
    assert all(r["proxy"] == PROXY and r["metric"] == "brightness" for r in rows)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["settings"]["n_prompts"], saved["prompts_used"]) == (8, 2)
    assert main([*args, "--out", str(tmp_path / "other")]) == 1  # the default metric, shapes, scores no diffusers images
    assert "--metric clip" in capsys.readouterr().err


def test_a_few_step_model_is_not_sampled_with_more_steps_than_its_own(tmp_path, sd3_pipe):
    profile_fast(sd3_pipe, fast_config(tmp_path, steps=None, scope="blocks"), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["settings"]["steps"] == 4  # a diffusers pipeline's default; the proxy's own 6 is more
