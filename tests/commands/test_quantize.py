import json

import torch

from hprune.cli import main
from hprune.folders import load
from hprune.model.testing import tiny_sd3


def saved_model(tmp_path):
    tiny_sd3(num_layers=2, attention_head_dim=64, joint_attention_dim=128, caption_projection_dim=128,
             pooled_projection_dim=128).save_pretrained(tmp_path / "m")
    return str(tmp_path / "m")


def quantize(tmp_path, *extra):
    return main(["quantize", saved_model(tmp_path), "--backend", "w4fp8", "--device", "cpu", *extra,
                 "--out", str(tmp_path / "q")])


def kept(tmp_path) -> list[str]:
    history = json.loads((tmp_path / "q" / "hprune.json").read_text())["history"]
    return history[-1]["kept"]


def test_the_summary_names_the_layers_w4fp8_keeps_by_default(tmp_path, capsys):
    assert quantize(tmp_path) == 0
    out = capsys.readouterr().out
    assert "kept in 16 bit: context_embedder, proj_out (w4fp8's default; --skip none quantizes them too)" in out
    assert kept(tmp_path) == ["context_embedder", "proj_out"]
    assert type(load(tmp_path / "q").proj_out) is torch.nn.Linear


def test_skip_none_quantizes_every_linear(tmp_path, capsys):
    assert quantize(tmp_path, "--skip", "none") == 0
    assert "none kept in 16 bit" in capsys.readouterr().out
    assert kept(tmp_path) == []


def test_skip_patterns_replace_the_default_and_a_pattern_that_matches_nothing_is_named(tmp_path, capsys):
    assert quantize(tmp_path, "--skip", "*.norm1.linear", "--skip", "x_embeder") == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "warning: --skip x_embeder matches no linear layer" in captured.err
    assert "(--skip)" in out and "proj_out" not in kept(tmp_path)
    assert kept(tmp_path) == ["transformer_blocks.0.norm1.linear", "transformer_blocks.1.norm1.linear"]


def test_skip_none_with_patterns_is_one_sentence_and_writes_nothing(tmp_path, capsys):
    assert quantize(tmp_path, "--skip", "none", "--skip", "proj_out") == 1
    err = capsys.readouterr().err
    assert "--skip none quantizes every linear layer and cannot be combined with patterns" in err
    assert "Traceback" not in err and not (tmp_path / "q").exists()
