import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.metrics import Metric, register_metric
from hprune.analysis.profile import (
    TABLE, ProfileConfig, profile, read_table, repair_tail, skip_only_blocks, variants, without,
)
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_pipeline, tiny_sd3


class Brightness(Metric):
    """Deterministic image metric: mean brightness and mean red."""

    name = "brightness"
    components = ("bright", "red")
    primary, alignment = "bright", "red"

    def score(self, images, prompts, scenes=None):
        x = images.reshape(len(images), -1, 3).astype(np.float64) / 255
        return {"bright": x.mean((1, 2)), "red": x[..., 0].mean(1)}


register_metric("brightness", lambda arg, device: Brightness())


@pytest.fixture(scope="module")
def sd3_pipe():
    return tiny_pipeline("sd3")

PROMPTS = ["a red circle", "a blue square", "the green triangle"]


def config(tmp_path, **kw):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    base = dict(metric="brightness", prompts=str(tmp_path / "prompts.txt"), steps=2, size=16, max_sequence_length=16)
    return ProfileConfig(**{**base, **kw})


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_variants_cover_blocks_subcomponents_and_pairs():
    model = tiny_sd3(num_layers=2)
    single = variants(model)
    assert single[0] == (Unit("joint", 0),) and all(len(v) == 1 for v in single)
    assert {v[0].sub for v in single} == {"block", "norm", "context_norm", "attn", "mlp", "context_mlp"}
    assert all(v[0].is_block for v in variants(model, "blocks"))
    assert not any(v[0].is_block for v in variants(model, "subcomponents"))
    pairs = [v for v in variants(model, pairs=True) if len(v) == 2]
    assert pairs and all(a.block_unit() == b.block_unit() and not a.is_block for a, b in pairs)
    n0 = sum(1 for v in single if v[0].index == 0 and not v[0].is_block)
    assert sum(1 for a, _ in pairs if a.index == 0) == n0 * (n0 - 1) // 2


def test_the_last_sd3_block_gets_a_whole_block_variant_only_when_every_block_is_asked_for():
    model = tiny_sd3(num_layers=3)
    last = Unit("joint", 2)
    assert skip_only_blocks(model) == {last} and not skip_only_blocks(tiny_flux())
    assert (last,) not in variants(model)  # `profile --fast` removes with surgery, which refuses it
    every = variants(model, every_block=True)
    assert every[every.index((last,)) + 1][0].block_unit() == last  # forward order: block, then its parts
    assert [v for v in every if v != (last,)] == variants(model)
    assert (last,) not in variants(model, "subcomponents", every_block=True)


def test_skipping_the_last_sd3_block_passes_its_hidden_states_to_the_final_norm():
    # diffusers' own skip_layers skips a block the same way: the hidden states go on unchanged
    model = tiny_sd3(num_layers=3)
    inputs = dummy_inputs(model)
    last = model.transformer_blocks[2]
    with torch.no_grad():
        expected = model(**inputs, skip_layers=[2])[0]
        with without(model, [Unit("joint", 2)]):
            skipped = model(**inputs)[0]
        full = model(**inputs)[0]
    torch.testing.assert_close(skipped, expected, rtol=0, atol=0)
    assert not torch.allclose(skipped, full)
    assert model.transformer_blocks[2] is last  # put back


def test_profile_measures_the_last_sd3_block_whole_and_no_plan_removes_it(tmp_path, sd3_pipe):
    from hprune.planning.plan import Plan
    from hprune.planning.scoring import PlanConfig, load_run, make_plan

    model = sd3_pipe.transformer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = profile(sd3_pipe, config(tmp_path, scope="blocks"), tmp_path / "run", progress=False)
    assert [r["variant"] for r in rows] == [f"joint.{i}.block" for i in range(4)]
    assert abs(rows[3]["dP"]) > 1e-6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Surgery cannot remove it, so units.json does not list it whole and every ranker passes it
    # over, even when its measured drop makes it the most prunable block.
    with pytest.raises(HpruneError, match="last SD3Transformer2DModel block"):
        Plan.for_model(model, ["joint.3"])
    run = load_run(tmp_path / "run")
    assert "joint.3.block" not in run.units.params
    rows = [{**r, "dP": 0.0 if r["variant"] == "joint.3.block" else r["dP"],
             "drops": {k: -1.0 if r["variant"] == "joint.3.block" else v for k, v in r["drops"].items()}}
            for r in run.rows]
    subs = [{**rows[0], "variant": u, "units": [u], "dP": 0.0, "drops": dict.fromkeys(rows[0]["drops"], 0.0)}
            for u in run.units.params if not u.endswith(".block")]
    for method in ("hpp", "bkscore", "koala", "lastk"):
        cfg = PlanConfig(method, 0.3, r_thres=0.3, alignment="red")
        plan = make_plan(cfg, run.units, rows + subs, {**run.similarity, "joint.3.block": 1.0})
        assert "joint.3.block" not in [u.key for u in plan.units], method


def test_profile_records_drops_and_leaves_the_model_intact(tmp_path, sd3_pipe):
    pipe = sd3_pipe
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    rows = profile(pipe, config(tmp_path), tmp_path / "run", progress=False)
    assert all(torch.equal(before[k], v) for k, v in pipe.transformer.state_dict().items())
    assert len(rows) == len(variants(pipe.transformer, every_block=True))
    row = rows[0]
    for key in ("variant", "units", "dP", "dP_std", "n_prompts", "seconds", "values", "drops"):
        assert key in row
    assert row["n_prompts"] == 3 and set(row["values"]) == {"bright", "red"}
    reference = json.loads((tmp_path / "run" / "reference.json").read_text())["values"]
    for r in rows:
        assert r["dP"] == pytest.approx(reference["bright"] - r["values"]["bright"])
    assert any(abs(r["dP"]) > 1e-6 for r in rows), "removing units must change the images"
    sims = json.loads((tmp_path / "run" / "similarity.json").read_text())
    assert set(sims) == {f"joint.{i}.block" for i in range(4)} and all(-1 <= s <= 1 for s in sims.values())
    units = json.loads((tmp_path / "run" / "units.json").read_text())
    assert units["family"] == "sd3" and units["params"]["joint.0.block"] > 0


def test_a_killed_run_resumes_to_the_same_table(tmp_path, sd3_pipe):
    """kill -9 mid-way, resume, and compare with an uninterrupted run."""
    cfg = config(tmp_path, scope="all")
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_profile as t
from hprune.model.testing import tiny_pipeline
from hprune.analysis.profile import ProfileConfig, profile
class Slow(t.Brightness):
    def score(self, images, prompts, scenes=None):
        time.sleep(0.3)
        return super().score(images, prompts)
t.register_metric("brightness", lambda a, d: Slow())
profile(tiny_pipeline("sd3"), ProfileConfig(**{cfg.__dict__!r}), sys.argv[1], progress=False)
"""
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(killed)], stderr=subprocess.PIPE, env=env)
    table = killed / TABLE
    deadline = time.time() + 120
    while time.time() < deadline and (not table.is_file() or len(table.read_text().splitlines()) < 3):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_table(table)
    total = len(variants(sd3_pipe.transformer, every_block=True))
    assert 3 <= len(partial) < total, "the run must be killed mid-way"
    with open(table, "ab") as f:
        f.write(b'{"variant": "joint.9.bl')  # what a kill during a write would leave
    resumed = profile(sd3_pipe, cfg, killed, progress=False)
    fresh = profile(sd3_pipe, cfg, tmp_path / "fresh", progress=False)
    assert len(fresh) == total
    assert without_seconds(resumed) == without_seconds(fresh)
    assert without_seconds(read_table(table)) == without_seconds(read_table(tmp_path / "fresh" / TABLE))
    # Finished rows were kept, not recomputed.
    assert {r["variant"]: r["seconds"] for r in partial}.items() <= {r["variant"]: r["seconds"] for r in resumed}.items()


def test_shards_cover_disjoint_shares_and_merge_to_one_table(tmp_path, sd3_pipe, monkeypatch):
    import accelerate

    cfg = config(tmp_path)
    fresh = profile(sd3_pipe, cfg, tmp_path / "one", progress=False)

    class FakeState:
        def __init__(self, rank, n):
            self.process_index, self.num_processes, self.is_main_process = rank, n, rank == 0
            self.device = torch.device("cpu")

        def wait_for_everyone(self):
            pass

    shares = []
    for rank, n in ((0, 2), (1, 2), (0, 1)):  # two shards, then a run that only merges
        monkeypatch.setattr(accelerate, "PartialState", lambda r=rank, n=n, **_: FakeState(r, n))
        before = {r["variant"] for r in read_table(tmp_path / "two" / TABLE)}
        rows = profile(sd3_pipe, cfg, tmp_path / "two", progress=False)
        shares.append({r["variant"] for r in read_table(tmp_path / "two" / TABLE)} - before)
    assert shares[0] and shares[1] and not shares[0] & shares[1] and not shares[2]
    assert abs(len(shares[0]) - len(shares[1])) <= 1
    assert without_seconds(rows) == without_seconds(fresh)


def test_repair_tail_cuts_a_half_written_line(tmp_path):
    path = tmp_path / TABLE
    path.write_text('{"variant": "a"}\n{"variant": "b"}\n{"vari')
    assert [r["variant"] for r in read_table(path)] == ["a", "b"]
    repair_tail(path)
    assert path.read_text() == '{"variant": "a"}\n{"variant": "b"}\n'


def test_resume_with_other_settings_is_refused(tmp_path, sd3_pipe):
    pipe = sd3_pipe
    profile(pipe, config(tmp_path, scope="blocks"), tmp_path / "run", progress=False)
    with pytest.raises(HpruneError) as err:
        profile(pipe, config(tmp_path, scope="blocks", steps=3, size=None), tmp_path / "run", progress=False)
    # Issue #22, item 10: which settings differ (old -> new), and how to start afresh.
    assert f"{tmp_path / 'run'} holds a profile made with other settings (--steps 2 -> 3, --size 16 -> (unset)); " \
           "pass the same settings to resume, or start afresh with a new --out" in str(err.value)
    rows = profile(pipe, config(tmp_path, scope="all"), tmp_path / "run", progress=False)  # scope only adds
    assert len(rows) == len(variants(pipe.transformer, every_block=True))


def test_settings_of_a_run_that_failed_before_its_reference_do_not_block_the_corrected_run(tmp_path, sd3_pipe,
                                                                                            monkeypatch):
    """Issue #22, item 10: a run that wrote its settings and then failed holds no results;
    the corrected re-run replaces its settings instead of being refused."""
    import hprune.analysis.profile as profile_module

    def fail(*args, **kwargs):
        raise RuntimeError("generation failed")

    with monkeypatch.context() as patch:
        patch.setattr(profile_module, "make_reference", fail)
        with pytest.raises(RuntimeError):
            profile(sd3_pipe, config(tmp_path, scope="blocks", steps=3), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.json").is_file() and not (tmp_path / "run" / "reference.npz").exists()
    rows = profile(sd3_pipe, config(tmp_path, scope="blocks", steps=2), tmp_path / "run", progress=False)
    assert rows and json.loads((tmp_path / "run" / "config.json").read_text())["settings"]["steps"] == 2


def test_koala_similarity_is_one_for_a_block_that_changes_nothing(tmp_path, sd3_pipe):
    import copy

    pipe = copy.deepcopy(sd3_pipe)
    block = pipe.transformer.transformer_blocks[1]
    with torch.no_grad():
        for linear in (block.attn.to_out[0], block.ff.net[2]):
            linear.weight.zero_()
            linear.bias.zero_()
    profile(pipe, config(tmp_path, scope="blocks"), tmp_path / "run", progress=False)
    sims = json.loads((tmp_path / "run" / "similarity.json").read_text())
    assert sims["joint.1.block"] == pytest.approx(1.0, abs=1e-5)
    assert sims["joint.0.block"] < 0.99999


def test_config_validation():
    with pytest.raises(HpruneError, match="--scope"):
        ProfileConfig(scope="heads")
    with pytest.raises(HpruneError, match="--norm-mode"):
        ProfileConfig(norm_mode="zero")
    with pytest.raises(HpruneError, match="does not exist"):
        from hprune.analysis.profile import calibration_set

        calibration_set(ProfileConfig(prompts="/nonexistent/prompts.txt"))


def test_mean_norm_mode_calibrates_once_and_differs_from_identity(tmp_path, sd3_pipe):
    rows = {}
    for mode in ("identity", "mean"):
        cfg = config(tmp_path, scope="subcomponents", norm_mode=mode)
        rows[mode] = {r["variant"]: r["dP"] for r in profile(sd3_pipe, cfg, tmp_path / mode, progress=False)}
    means = torch.load(tmp_path / "mean" / "norm_means.pt")
    assert "joint.0.norm" in means and not (tmp_path / "identity" / "norm_means.pt").exists()
    assert rows["mean"]["joint.0.norm"] != rows["identity"]["joint.0.norm"]
    assert rows["mean"]["joint.0.attn"] == rows["identity"]["joint.0.attn"]  # only norms change
