import json

import torch
from diffusers import SD3Transformer2DModel

from hprune.planning.plan import Plan
from hprune.cli import main
from hprune.folders import load
from hprune.model.testing import dummy_inputs, tiny_sd3


def test_remove_blocks_by_hand(tmp_path, capsys):
    tiny_sd3(num_layers=5).save_pretrained(tmp_path / "m")
    assert main(["prune", str(tmp_path / "m"), "--remove-blocks", "1,3", "--out", str(tmp_path / "o")]) == 0
    assert "fewer" in capsys.readouterr().out
    assert SD3Transformer2DModel.from_pretrained(tmp_path / "o").config.num_layers == 3


def test_prune_with_plan_file(tmp_path):
    model = tiny_sd3()
    model.save_pretrained(tmp_path / "m")
    Plan.for_model(model, ["joint.1.attn", "joint.0"]).save(tmp_path / "plan.json")
    assert main(["prune", str(tmp_path / "m"), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "o")]) == 0
    loaded = load(tmp_path / "o")
    assert len(loaded.transformer_blocks) == 3
    assert torch.isfinite(loaded(**dummy_inputs(loaded))[0]).all()


def test_prune_errors(tmp_path, capsys):
    tiny_sd3(num_layers=3).save_pretrained(tmp_path / "m")
    other = tiny_sd3(num_layers=6)
    Plan.for_model(other, ["joint.4"]).save(tmp_path / "other.json")
    cases = [
        (["--remove-blocks", "9"], "does not have"),
        (["--remove-blocks", "x1"], "block indices"),
        (["--plan", str(tmp_path / "other.json")], "made for a SD3Transformer2DModel with 6 layers"),
    ]
    for extra, message in cases:
        assert main(["prune", str(tmp_path / "m"), *extra, "--out", str(tmp_path / "o")]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "bad.json").write_text(json.dumps({"schema": 1, "family": "sd3", "arch": {}, "units": ["joint.zz"]}))
    assert main(["prune", str(tmp_path / "m"), "--plan", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")]) == 1
    assert "not a unit name" in capsys.readouterr().err


def test_mean_mode_plan_needs_and_uses_the_calibration(tmp_path, capsys):
    import torch

    from hprune.prune.surgery import calibrate_norms

    model = tiny_sd3()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "run").mkdir()
    Plan.for_model(model, ["joint.1.norm"], norm_mode="mean").save(tmp_path / "run" / "plan.json")
    args = ["prune", str(tmp_path / "m"), "--plan", str(tmp_path / "run" / "plan.json"), "--out", str(tmp_path / "o")]
    assert main(args) == 1 and "--norm-means" in capsys.readouterr().err
    means = calibrate_norms(model, [dummy_inputs(model)])
    torch.save(means, tmp_path / "run" / "norm_means.pt")
    assert main(args) == 0
    loaded = load(tmp_path / "o")
    value = loaded.transformer_blocks[1].norm1.linear.value
    assert torch.allclose(value, means["joint.1.norm"])


def test_pruned_shapes_teacher_generates(tmp_path):
    import numpy as np

    from hprune.folders import load_pipeline

    plan_units = ["joint.3", "joint.5.attn", "joint.6.norm"]
    teacher = load_pipeline("shapes-sd3")
    Plan.for_model(teacher.transformer, plan_units).save(tmp_path / "plan.json")
    assert main(["prune", "shapes-sd3", "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "p")]) == 0
    pruned = load_pipeline(tmp_path / "p")
    assert len(pruned.transformer.transformer_blocks) == 15
    images = pruned(["a red circle"], num_inference_steps=2, seeds=[0]).images
    assert images.shape == (1, 64, 64, 3) and images.dtype == np.uint8


def test_pruning_a_pruned_folder_composes_the_plans_in_original_indices(tmp_path, capsys):
    model = tiny_sd3(num_layers=4)
    model.save_pretrained(tmp_path / "m")
    assert main(["prune", str(tmp_path / "m"), "--remove", "joint.0.mlp,joint.2.attn", "--out", str(tmp_path / "a")]) == 0
    assert main(["prune", str(tmp_path / "a"), "--remove-blocks", "1", "--out", str(tmp_path / "b")]) == 0
    assert main(["prune", str(tmp_path / "b"), "--remove", "joint.0.attn", "--out", str(tmp_path / "c")]) == 0
    assert main(["prune", str(tmp_path / "c"), "--remove-blocks", "1", "--out", str(tmp_path / "d")]) == 1
    assert "already removed" in capsys.readouterr().err and not (tmp_path / "d").exists()
    twice = load(tmp_path / "c")
    once = Plan.for_model(model, ["joint.0.mlp", "joint.2.attn", "joint.1", "joint.0.attn"])
    from hprune.prune.surgery import prune_

    prune_(model, once)
    kwargs = dummy_inputs(model)
    with torch.no_grad():
        assert torch.allclose(twice(**kwargs)[0], model(**kwargs)[0], atol=1e-6)
    assert all(not t.is_meta for t in twice.state_dict().values())
