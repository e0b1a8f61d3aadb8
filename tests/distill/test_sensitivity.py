import json

import numpy as np
import pytest

from hprune.distill.sensitivity import load_sensitivity
from hprune.core.errors import HpruneError
from hprune.metrics import Metric, register_metric


def test_sensitivity_of_an_old_table_sums_the_parts_of_a_block_without_its_own_row_and_says_so(tmp_path, caplog):
    rows = [{"units": ["joint.0.block"], "dP": 0.3}, {"units": ["joint.0.attn"], "dP": 0.2},
            {"units": ["joint.1.attn"], "dP": 0.25}, {"units": ["joint.1.context_norm"], "dP": 0.05},
            {"units": ["joint.0.block", "joint.1.attn"], "dP": 0.9}]
    path = tmp_path / "contribution.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level("WARNING", logger="hprune"):
        dp = load_sensitivity(path)
    assert dp == pytest.approx({"joint.0.block": 0.3, "joint.0.attn": 0.2, "joint.1.attn": 0.25,
                                "joint.1.context_norm": 0.05, "joint.1.block": 0.3})
    warned = [r.getMessage() for r in caplog.records if r.name == "hprune"]
    assert len(warned) == 1 and "joint.1.block has no whole-block dP" in warned[0] and "joint.0" not in warned[0]


class Darkness(Metric):
    """Deterministic image metric: mean darkness (any removal that changes the images moves it)."""

    name = "darkness"
    components = ("dark",)
    primary = alignment = "dark"

    def score(self, images, prompts, scenes=None):
        return {"dark": 1 - images.reshape(len(images), -1).astype(np.float64).mean(1) / 255}


register_metric("darkness", lambda arg, device: Darkness())


def test_sensitivity_of_a_new_profile_is_the_last_sd3_blocks_measured_drop(tmp_path, caplog):
    from hprune.analysis.profile import ProfileConfig, profile
    from hprune.model.testing import tiny_pipeline

    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    cfg = ProfileConfig(metric="darkness", prompts=str(tmp_path / "prompts.txt"), steps=2, size=16,
                        max_sequence_length=16)
    rows = profile(tiny_pipeline("sd3"), cfg, tmp_path / "run", progress=False)
    measured = {r["variant"]: r["dP"] for r in rows}
    parts = sum(v for k, v in measured.items() if k.startswith("joint.3.") and k != "joint.3.block"
                and "+" not in k)
    with caplog.at_level("WARNING", logger="hprune"):
        dp = load_sensitivity(tmp_path / "run" / "contribution.jsonl")
    assert dp["joint.3.block"] == measured["joint.3.block"] != pytest.approx(parts)
    assert not [r for r in caplog.records if r.name == "hprune"]


def test_missing_sensitivity_table_says_what_to_run(tmp_path):
    with pytest.raises(HpruneError, match="run `hprune profile`"):
        load_sensitivity(tmp_path / "none.jsonl")
