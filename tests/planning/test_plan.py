import json

import pytest

from hprune.core.errors import HpruneError
from hprune.model import get_adapter
from hprune.model.testing import tiny_sd3
from hprune.model.units import Unit
from hprune.planning.plan import Plan, check_ratio


def test_plan_round_trips(tmp_path):
    plan = Plan("sd3", {"class": "SD3Transformer2DModel", "num_layers": 4}, ["joint.2", "joint.0.attn"],
                method="hpp", ratio_target=0.2, alpha=0.55, scores={"joint.2.block": -1.5})
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again == plan
    data = json.loads((tmp_path / "plan.json").read_text())
    assert {"schema", "family", "method", "ratio_target", "ratio_reached", "alpha", "units"} <= data.keys()


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(HpruneError, match="between 0 and 1"):
        check_ratio(ratio)


def test_bad_plan_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(HpruneError, match="not valid JSON"):
        Plan.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"schema": 7}))
    with pytest.raises(HpruneError, match="not an hprune plan"):
        Plan.load(tmp_path / "b.json")
    with pytest.raises(HpruneError, match="does not exist"):
        Plan.load(tmp_path / "none.json")


def test_plan_rejects_overlap_and_unknown_fields():
    with pytest.raises(HpruneError, match="whole block"):
        Plan("sd3", {}, ["joint.1", "joint.1.attn"])
    with pytest.raises(HpruneError, match="norm_mode"):
        Plan("sd3", {}, ["joint.1"], norm_mode="zero")


def test_plan_with_missing_unit_is_refused():
    model = tiny_sd3(num_layers=3)
    with pytest.raises(HpruneError, match="block joint.7 "):
        Plan.for_model(model, ["joint.7"])
    with pytest.raises(HpruneError, match="block single.0 "):
        Plan.for_model(model, ["single.0"])


def test_plan_for_model_ratio_is_parameter_share():
    model = tiny_sd3(num_layers=4)
    adapter = get_adapter(model)
    plan = Plan.for_model(model, ["joint.0", "joint.1.mlp"])
    removed = adapter.unit_params(model, Unit("joint", 0)) + adapter.unit_params(model, Unit("joint", 1, "mlp"))
    assert plan.ratio_reached == pytest.approx(removed / adapter.total_params(model), abs=1e-6)
