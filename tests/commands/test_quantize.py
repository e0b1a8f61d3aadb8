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


def history(folder) -> list[dict]:
    return json.loads((folder / "hprune.json").read_text())["history"]


def test_a_pipeline_is_rounded_by_gptq_on_calibration_images(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", "shapes-sd3", "--device", "cpu", "--calibration-images", "8", "--out", str(out)]) == 0
    assert "with w4fp8 (GPTQ rounding on 8 calibration images)" in capsys.readouterr().out
    step = history(out / "transformer")[-1]
    assert step["config"]["rounding"] == "gptq" and step["calibration"]["images"] == 8


def test_a_bare_transformer_folder_rounds_to_nearest_and_says_so(tmp_path, capsys):
    assert quantize(tmp_path) == 0
    assert "has no pipeline to draw calibration images with" in capsys.readouterr().err
    assert history(tmp_path / "q")[-1]["config"]["rounding"] == "nearest"


def test_gptq_asked_for_a_bare_transformer_folder_is_one_sentence_and_writes_nothing(tmp_path, capsys):
    assert quantize(tmp_path, "--rounding", "gptq") == 1
    err = capsys.readouterr().err
    assert "--rounding gptq draws calibration images with the model's pipeline" in err
    assert "Traceback" not in err and not (tmp_path / "q").exists()


def test_a_missing_calibration_prompt_file_is_one_sentence_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", "shapes-sd3", "--device", "cpu", "--calibration-prompts", str(tmp_path / "nope.txt"),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nope.txt does not exist" in err and "Traceback" not in err and not out.exists()


def test_a_backend_with_a_caution_says_it_on_stderr_and_still_quantizes(tmp_path, capsys, monkeypatch):
    from hprune.quant import get_backend

    monkeypatch.setattr(get_backend("w4fp8"), "caution", "planted: w4fp8 is slow at one token.")
    assert quantize(tmp_path) == 0
    captured = capsys.readouterr()
    assert captured.err.count("note: planted: w4fp8 is slow at one token.") == 1
    assert "quantized" in captured.out
    # a folder that cannot be quantized gets its one-sentence error, and no note before it
    again = ["quantize", str(tmp_path / "q"), "--backend", "w4fp8", "--device", "cpu", "--out", str(tmp_path / "q2")]
    assert main(again) == 1
    err = capsys.readouterr().err
    assert "already quantized" in err and "note:" not in err


def test_the_tinygemm_layout_cautions_against_many_tokens_and_names_the_fast_backends():
    from hprune.quant import backends

    cautioned = {name for name, backend in backends().items() if backend.caution}
    assert cautioned == {"torchao-int4-tinygemm"}
    assert "w4fp8" in backends()["torchao-int4-tinygemm"].caution
