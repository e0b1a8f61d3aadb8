"""`hprune distill` refusals leave nothing behind (issue #22, item 10): inputs are checked
before the data cache is made, and a run refused after it removes the cache it made."""

import pytest

from hprune.cli import main
from hprune.core.errors import HpruneError


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    from hprune.planning.plan import Plan
    from hprune.folders import load

    model = load("shapes-sd3")
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    Plan.for_model(model, ["joint.1"]).save(path)
    return path


def _argv(plan, out, *extra):
    return ["distill", "--teacher", "shapes-sd3", "--plan", str(plan), "--data", "shapes:2", "--steps", "1",
            "--batch-size", "1", "--out", str(out), *extra]


def _error(capsys) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("error: ") and sum(l.startswith("error: ") for l in lines) == 1
    return lines[-1]


def test_a_run_refused_after_its_data_was_made_leaves_no_cache(plan, tmp_path, monkeypatch, capsys):
    import hprune.distill.loop as loop

    def refuse(groups, cfg):
        raise HpruneError("nothing is left to train: PWP/SGDistill froze every weight; move --pwp-boundary.")

    monkeypatch.setattr(loop, "_optimizer", refuse)
    out = tmp_path / "run"
    assert main(_argv(plan, out)) == 1
    assert "nothing is left to train" in _error(capsys)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_an_earlier_run_is_refused_before_any_data_is_made(plan, tmp_path, monkeypatch, capsys):
    import hprune.distill.sources as sources

    def no_data(*args, **kwargs):
        raise AssertionError("data was made before the run folder was checked")

    monkeypatch.setattr(sources, "build_data", no_data)
    out = tmp_path / "run"
    out.mkdir()
    (out / "loss.csv").write_text("step,loss,kd,feat\n0,1,1,1\n")
    assert main(_argv(plan, out)) == 1
    assert _error(capsys) == f"error: {out} holds an earlier distillation; pass --resume to continue it or choose another --out."
    assert sorted(p.name for p in out.iterdir()) == ["loss.csv"]
    assert main(_argv(plan, out, "--sensitivity", str(tmp_path / "missing.jsonl"), "--resume")) == 1
    assert "sensitivity table" in _error(capsys)


@pytest.mark.parametrize("flag,shared", [((), True), (("--no-share-prefix",), False)])
def test_no_share_prefix_reaches_the_config(plan, tmp_path, monkeypatch, flag, shared):
    import hprune.distill as distill_package

    seen = {}

    def stop(teacher, plan, data, cfg, *args, **kwargs):
        seen["share_prefix"] = cfg.share_prefix
        raise HpruneError("stopped by the test")

    monkeypatch.setattr(distill_package, "distill", stop)
    assert main(_argv(plan, tmp_path / "run", *flag)) == 1
    assert seen == {"share_prefix": shared}
