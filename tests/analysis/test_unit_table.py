import json

import pytest

from hprune.analysis.unit_table import ModelUnits, unit_table
from hprune.core.errors import HpruneError
from hprune.model.testing import tiny_flux


def test_model_units_round_trip_through_units_json(tmp_path):
    model = tiny_flux(num_layers=2, num_single_layers=3)
    units = ModelUnits.from_model(model)
    (tmp_path / "units.json").write_text(json.dumps(units.to_dict()))  # as `hprune profile` writes it
    again = ModelUnits.load(tmp_path / "units.json")
    assert again == units
    assert again.blocks == ("joint.0.block", "joint.1.block", *(f"single.{i}.block" for i in range(3)))
    assert again.params == {row["unit"]: row["params"] for row in unit_table(model)}


def test_missing_units_json_says_how_to_make_it(tmp_path):
    with pytest.raises(HpruneError, match="run `hprune profile` for this model first"):
        ModelUnits.load(tmp_path / "units.json")
