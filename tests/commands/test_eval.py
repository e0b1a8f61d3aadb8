import json

import numpy as np
import pytest
import torch

from hprune.cli import main
from hprune.commands.eval import evaluate_dir
from hprune.commands.generate import split_items
from hprune.generate.images import GenerationConfig, generate_to_dir
from hprune.toy.pipeline import ArchConfig, build_pipeline
from hprune.toy.prompts import VOCABULARY, parse
from hprune.toy.render import render_scene


def write_renders(folder, items):
    """A generation folder whose images are exact renders: ShapesEval's ceiling."""
    class RenderPipe:
        def __call__(self, prompts, num_inference_steps, guidance_scale, seeds):
            images = np.stack([render_scene(parse(p), s) for p, s in zip(prompts, seeds)])
            return type("Out", (), {"images": images})

    generate_to_dir(RenderPipe(), items, folder, GenerationConfig(), progress=False)


def test_generate_then_eval_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    model = tmp_path / "model"
    build_pipeline(ArchConfig(family="sd3", width=32, head_dim=16, num_layers=2, text_width=32), VOCABULARY
                   ).save_pretrained(model)
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model), "--split", "test", "--limit", "8", "--steps", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "eval.json").read_text())
    assert {"semantic", "quality", "per_category"} <= set(result) and result["n"] == 8
    assert result["semantic"] < 0.5  # an untrained model draws noise
    assert result["reference"]["semantic"] > 0.9
    assert "semantic" in printed and "quality / renders' quality" in printed


def test_exact_renders_score_at_the_top(tmp_path):
    write_renders(tmp_path, split_items("val")[:16])
    result = evaluate_dir(tmp_path)
    assert result["semantic"] >= 0.98 and result["quality_ratio"] == pytest.approx(1.0, abs=0.02)
    assert len(result["per_prompt"]) == 16


def test_eval_of_an_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 1
    assert "run `hprune generate` first" in capsys.readouterr().err


def test_unreadable_image_is_named(tmp_path, capsys):
    write_renders(tmp_path, split_items("val")[:2])
    (tmp_path / "00001.png").write_bytes(b"not a png")
    assert main(["eval", str(tmp_path), "--no-reference"]) == 1
    assert "00001.png" in capsys.readouterr().err
