import json

import pytest

from hprune.core.errors import HpruneError
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
