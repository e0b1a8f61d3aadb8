import json

import numpy as np
import pytest

from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.report.analysis import (
    agreement, heatmap_grid, method_rankings, pair_matrices, plans_by_ratio, report_analysis, shared_params,
)
from hprune.planning.scoring import ModelUnits, load_run

SUBS = {"norm": 10, "context_norm": 10, "attn": 40, "mlp": 20, "context_mlp": 20}
N = 6


def write_run(path, pairs=True):
    """A run directory as `hprune profile` leaves it, with known drops:
    early blocks lose semantics, late blocks lose quality."""
    path.mkdir(parents=True)
    params = {}
    for i in range(N):
        params[f"joint.{i}.block"] = 100
        params.update({f"joint.{i}.{s}": p for s, p in SUBS.items()})
    units = ModelUnits("sd3", {"num_layers": N}, N * 100 + 10, tuple(f"joint.{i}.block" for i in range(N)), params)
    (path / "units.json").write_text(json.dumps(units.to_dict()))
    rows = []
    for i in range(N):
        sem, qual = 0.5 * (N - i) / N, 0.05 * (i + 1)
        rows.append(row([f"joint.{i}.block"], sem, qual))
        for j, s in enumerate(SUBS):
            rows.append(row([f"joint.{i}.{s}"], sem / (j + 2), qual / (j + 2)))
        if pairs:
            rows.append(row([f"joint.{i}.norm", f"joint.{i}.attn"], sem, 0.0))
    (path / "contribution.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "similarity.json").write_text(json.dumps({f"joint.{i}.block": 0.9 + 0.01 * ((i * 5) % N) for i in range(N)}))
    (path / "reference.json").write_text(json.dumps({"metric": "shapes", "primary": "score", "alignment": "semantic",
                                                     "values": {"score": 0.8, "semantic": 0.7, "quality": 0.9}, "n_prompts": 64}))
    (path / "config.json").write_text(json.dumps({"settings": {"norm_mode": "identity"}}))
    return path


def row(units, sem, qual):
    score = (sem + qual) / 2
    return {"variant": "+".join(units), "units": units, "dP": score, "dP_std": 0.1, "n_prompts": 64, "seconds": 0.5,
            "metric": "shapes", "values": {}, "drops": {"score": score, "semantic": sem, "quality": qual}}


@pytest.fixture
def run(tmp_path):
    return load_run(write_run(tmp_path / "run"))


def test_heatmap_puts_each_drop_at_its_block_and_subcomponent(run):
    subs, grid = heatmap_grid(run, "semantic")
    assert subs == ["block", "norm", "context_norm", "attn", "mlp", "context_mlp"]
    assert grid.shape == (6, N)
    assert grid[0, 0] == pytest.approx(0.5) and grid[0, -1] == pytest.approx(0.5 / N)
    assert grid[subs.index("attn"), 2] == pytest.approx(0.5 * (N - 2) / N / 4)
    assert np.all(np.diff(grid[0]) < 0)  # semantics fall with depth in this run


def test_pair_matrix_is_symmetric_with_singles_on_the_diagonal(run):
    subs, m = pair_matrices(run)["joint.2.block"]
    i, j = subs.index("norm"), subs.index("attn")
    assert m[i, j] == m[j, i] == pytest.approx((0.5 * 4 / 6) / 2)
    assert m[i, i] == pytest.approx(next(r["dP"] for r in run.rows if r["variant"] == "joint.2.norm"))


def test_rankings_plans_and_agreement(run):
    rankings = method_rankings(run)
    assert set(rankings) == {"hpp", "koala", "bkscore", "lastk"}
    assert rankings["lastk"][0][0] == "joint.5.block"
    assert rankings["bkscore"][0][0] == "joint.5.block"  # smallest semantic drop
    sim = json.loads((run.path / "similarity.json").read_text())
    assert rankings["koala"][0][0] == max(sim, key=sim.get)
    plans = plans_by_ratio(run, [0.3])[0.3]
    assert all(len(plans[m]) >= 2 for m in plans)
    counts = agreement(plans)
    assert counts[("bkscore", "lastk")] == len(set(plans["bkscore"]) & set(plans["lastk"]))
    assert shared_params(run, plans["lastk"], plans["lastk"]) == 1.0
    assert shared_params(run, ["joint.5.attn"], ["joint.5.block"]) == 1.0
    assert shared_params(run, ["joint.5.block"], ["joint.5.attn"]) == pytest.approx(0.4)


def test_report_writes_figures_and_page(run, tmp_path):
    text = report_analysis(run, tmp_path / "out", k=3)
    for name in ("contribution.png", "depth.png", "pairs.png", "index.html"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert "koala" in text and "plans at 20%" in text and "in common" in text
    page = (tmp_path / "out" / "index.html").read_text()
    assert 'src="contribution.png"' in page and "joint.0.norm+joint.0.attn" in page


def test_report_without_pairs_skips_the_pair_figure(tmp_path):
    run = load_run(write_run(tmp_path / "run", pairs=False))
    report_analysis(run, tmp_path / "out")
    assert not (tmp_path / "out" / "pairs.png").exists()


def test_report_command(tmp_path, capsys):
    write_run(tmp_path / "run")
    assert main(["report-analysis", str(tmp_path / "run"), "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "top 4 most prunable units" in out and "hpp" in out
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    assert main(["report-analysis", str(tmp_path / "run"), "--ratios", "0.2,x"]) == 1
    assert "--ratios takes fractions" in capsys.readouterr().err


def test_empty_run_is_a_clear_error(tmp_path):
    path = write_run(tmp_path / "run")
    (path / "contribution.jsonl").write_text("")
    with pytest.raises(HpruneError, match="no contribution rows yet"):
        report_analysis(load_run(path), tmp_path / "out")
