from hprune.experiments.demo import tiny_sd3_demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    tiny_sd3_demo(tmp_path)
    out = capsys.readouterr().out
    assert "reloaded with plain diffusers (2 blocks)" in out
    assert (tmp_path / "pruned.png").stat().st_size > 0
