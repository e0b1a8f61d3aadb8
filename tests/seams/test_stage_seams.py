"""Seams between stages: what one stage writes, the next one reads."""

import importlib.util
import json

import pytest
import torch

import hprune
from hprune.planning.plan import Plan
from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.folders import MANIFEST, load, load_pipeline, save
from hprune.quant.quantize import QuantConfig, quantize_
from hprune.prune.surgery import prune_
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_sd3

CPU_BACKENDS = ["w4fp8"] + (["bnb-nf4"] if importlib.util.find_spec("bitsandbytes") else [])


def _wide_sd3():
    """Linears 128 wide, so every backend quantizes every block layer."""
    return tiny_sd3(num_layers=3, attention_head_dim=64, joint_attention_dim=128, caption_projection_dim=128,
                    pooled_projection_dim=128)


def _wide_flux():
    return tiny_flux(num_layers=2, num_single_layers=2, attention_head_dim=64, axes_dims_rope=(16, 24, 24),
                     joint_attention_dim=128, pooled_projection_dim=128)


def _forward(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0].float()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("make,units", [
    (_wide_sd3, ["joint.0.norm", "joint.1.attn", "joint.0.context_mlp"]),
    # single.1 loses both branches: its proj_out keeps no input and must stay a bias-only layer
    (_wide_flux, ["joint.0", "single.1.attn", "single.1.mlp_proj", "single.0.norm"]),
])
def test_prune_quantize_save_load_gives_the_in_memory_output(tmp_path, backend, make, units):
    model = make()
    kwargs = dummy_inputs(model)
    kwargs.pop("guidance", None)
    prune_(model, Plan.for_model(model, units))
    pruned = _forward(model, kwargs)
    quantize_(model, QuantConfig(backend=backend))
    quantized = _forward(model, kwargs)
    assert torch.isfinite(quantized).all()
    assert ((quantized - pruned).norm() / pruned.norm()) < 0.25  # within 4-bit error of the 16-bit pruned model
    save(model, tmp_path / "q")
    loaded = load(tmp_path / "q")
    assert torch.equal(_forward(loaded, kwargs), quantized)
    assert [s["stage"] for s in json.loads((tmp_path / "q" / MANIFEST).read_text())["history"]] == ["prune", "quantize"]


def test_a_loaded_folder_keeps_its_history_through_the_next_stage(tmp_path):
    model = _wide_sd3()
    prune_(model, Plan.for_model(model, ["joint.0.mlp"]))
    save(model, tmp_path / "p")
    again = load(tmp_path / "p")
    quantize_(again, QuantConfig(backend="w4fp8"))
    save(again, tmp_path / "q")
    history = json.loads((tmp_path / "q" / MANIFEST).read_text())["history"]
    assert [s["stage"] for s in history] == ["prune", "quantize"]
    with pytest.raises(HpruneError, match="quantized; prune the 16-bit model"):
        prune_(load(tmp_path / "q"), Plan.for_model(_wide_sd3(), ["joint.1"]))


def test_distill_with_default_data_then_load(tmp_path, capsys):
    teacher = hprune.load("shapes-sd3")
    Plan.for_model(teacher, ["joint.3.mlp", "joint.5"]).save(tmp_path / "plan.json")
    args = ["distill", "--teacher", "shapes-sd3", "--plan", str(tmp_path / "plan.json"), "--data", "shapes:8",
            "--steps", "2", "--batch-size", "2", "--mixed-precision", "no", "--out", str(tmp_path / "run")]
    assert main(args) == 0, capsys.readouterr().err
    student = load(tmp_path / "run")  # the run folder's model/
    assert len(student.transformer_blocks) == len(teacher.transformer_blocks) - 1
    pipe = load_pipeline(tmp_path / "run")
    assert pipe(["a red circle"], num_inference_steps=1).images.shape[0] == 1
    assert not list((tmp_path / "run" / "model").rglob("distill_data*"))  # run state stays beside the model
    assert list((tmp_path / "run").glob("distill_data*.safetensors"))


def test_prune_quantize_generate_eval_through_the_cli(tmp_path, capsys):
    teacher = hprune.load("shapes-sd3")
    Plan.for_model(teacher, ["joint.2.attn", "joint.4"]).save(tmp_path / "plan.json")
    steps = [
        ["prune", "shapes-sd3", "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "pruned")],
        ["quantize", str(tmp_path / "pruned"), "--backend", "w4fp8", "--device", "cpu", "--out", str(tmp_path / "q")],
        ["generate", "--model", str(tmp_path / "q"), "--split", "val", "--limit", "2", "--steps", "1",
         "--device", "cpu", "--out", str(tmp_path / "gen")],
        ["eval", str(tmp_path / "gen"), "--no-reference"],
    ]
    for args in steps:
        assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "q" / "model_index.json").is_file()  # a pipeline in, a pipeline out
    assert json.loads((tmp_path / "gen" / "eval.json").read_text())["n"] == 2


def test_a_plan_for_another_model_is_one_sentence_at_every_stage(tmp_path, capsys):
    other = tiny_sd3(num_layers=6)
    Plan.for_model(other, ["joint.4"]).save(tmp_path / "other.json")
    tiny_sd3(num_layers=3).save_pretrained(tmp_path / "m")
    commands = [
        ["prune", str(tmp_path / "m"), "--plan", str(tmp_path / "other.json"), "--out", str(tmp_path / "o")],
        ["distill", "--teacher", "shapes-sd3", "--plan", str(tmp_path / "other.json"), "--steps", "1",
         "--out", str(tmp_path / "o")],
    ]
    for args in commands:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "made for a SD3Transformer2DModel with 6 layers" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()
    # a manifest whose plan names another model's blocks
    model = tiny_sd3(num_layers=3)
    prune_(model, Plan.for_model(model, ["joint.0"]))
    save(model, tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / MANIFEST).read_text())
    manifest["history"][0]["plan"] = json.loads((tmp_path / "other.json").read_text())
    (tmp_path / "p" / MANIFEST).write_text(json.dumps(manifest))
    assert main(["inspect", str(tmp_path / "p")]) == 1
    assert "made for a SD3Transformer2DModel with 6 layers" in capsys.readouterr().err
