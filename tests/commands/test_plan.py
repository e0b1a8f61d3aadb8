import json

import pytest
import torch

from hprune.cli import main
from hprune.metrics import Metric, register_metric
from hprune.planning.plan import Plan
from hprune.analysis.profile import ProfileConfig, profile
from hprune.model.testing import tiny_pipeline


class Blueness(Metric):
    name = "blueness"
    components = ("blue", "semantic")
    primary, alignment = "blue", "semantic"

    def score(self, images, prompts, scenes=None):
        x = images.reshape(len(images), -1, 3) / 255.0
        return {"blue": x[..., 2].mean(1), "semantic": x.mean((1, 2))}


register_metric("blueness", lambda arg, device: Blueness())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("plan")
    (tmp / "prompts.txt").write_text("a red circle\na blue square\n")
    cfg = ProfileConfig(metric="blueness", prompts=str(tmp / "prompts.txt"), steps=2, size=16, max_sequence_length=16)
    profile(tiny_pipeline("sd3", seed=3), cfg, tmp / "run", progress=False)
    torch.set_num_threads(old)
    return tmp / "run"


@pytest.mark.parametrize("method", ["hpp", "koala", "bkscore", "lastk"])
def test_plan_command_writes_a_plan_for_each_method(run_dir, method, tmp_path, capsys):
    out = tmp_path / f"plan-{method}-0.3.json"
    assert main(["plan", str(run_dir), "--method", method, "--ratio", "0.3", "--out", str(out)]) == 0
    assert method in capsys.readouterr().out
    data = json.loads(out.read_text())
    for key in ("schema", "family", "method", "ratio_target", "ratio_reached", "alpha", "units"):
        assert key in data
    assert data["schema"] == 1 and data["method"] == method and data["family"] == "sd3"
    assert data["ratio_reached"] >= 0.3
    assert (data["alpha"] == 0.55) == (method == "hpp")
    plan = Plan.load(out)
    units = json.loads((run_dir / "units.json").read_text())
    removed = sum(units["params"][u.key] for u in plan.units)
    assert removed / units["total_params"] == pytest.approx(data["ratio_reached"])


def test_plans_agree_in_parameter_count_within_one_unit(run_dir, tmp_path):
    units = json.loads((run_dir / "units.json").read_text())
    biggest = max(units["params"].values()) / units["total_params"]
    reached = []
    for method in ("hpp", "koala", "bkscore", "lastk"):
        main(["plan", str(run_dir), "--method", method, "--ratio", "0.2", "--out", str(tmp_path / "p.json")])
        reached.append(json.loads((tmp_path / "p.json").read_text())["ratio_reached"])
    assert max(reached) - min(reached) <= biggest


def test_default_output_and_alpha_override(run_dir):
    assert main(["plan", str(run_dir), "--method", "hpp", "--ratio", "0.4", "--alpha", "2", "--r-thres", "0.2"]) == 0
    plan = Plan.load(run_dir / "plan.json")
    assert plan.alpha == 2 and plan.r_thres == 0.2 and plan.norm_mode == "identity"
    assert any(not u.is_block for u in plan.units), "beyond r_thres HPP removes subcomponents"


def test_plan_errors_are_one_sentence(run_dir, tmp_path, capsys):
    assert main(["plan", str(tmp_path), "--method", "hpp", "--ratio", "0.2"]) == 1
    assert "not a profile run directory" in capsys.readouterr().err
    assert main(["plan", str(run_dir), "--method", "hpp", "--ratio", "1.5"]) == 1
    assert "--ratio must be between 0 and 1" in capsys.readouterr().err
    assert main(["plan", str(run_dir), "--method", "bkscore", "--ratio", "0.2", "--alignment", "clip"]) == 1
    assert "choose --alignment from" in capsys.readouterr().err
