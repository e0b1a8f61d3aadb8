import json

import pytest

from hprune.distill.sensitivity import load_sensitivity
from hprune.errors import HpruneError


def test_sensitivity_keeps_parts_and_sums_them_for_a_block_without_its_own_row(tmp_path):
    rows = [{"units": ["joint.0.block"], "dP": 0.3}, {"units": ["joint.0.attn"], "dP": 0.2},
            {"units": ["joint.1.attn"], "dP": 0.25}, {"units": ["joint.1.context_norm"], "dP": 0.05},
            {"units": ["joint.0.block", "joint.1.attn"], "dP": 0.9}]
    path = tmp_path / "contribution.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dp = load_sensitivity(path)
    assert dp == pytest.approx({"joint.0.block": 0.3, "joint.0.attn": 0.2, "joint.1.attn": 0.25,
                                "joint.1.context_norm": 0.05, "joint.1.block": 0.3})


def test_missing_sensitivity_table_says_what_to_run(tmp_path):
    with pytest.raises(HpruneError, match="run `hprune profile`"):
        load_sensitivity(tmp_path / "none.jsonl")
