import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FluxTransformer2DModel, SD3Transformer2DModel

from hprune.model import get_adapter
from hprune.planning.plan import Plan
from hprune.core.errors import HpruneError
from hprune.folders import MANIFEST, load, load_pipeline, save
from hprune.prune.surgery import calibrate_norms, prune_
from hprune.model.testing import TINY_MODELS, dummy_inputs, tiny_flux, tiny_generate, tiny_pipeline, tiny_sd3

PLANS = {
    "sd3": ["joint.0", "joint.1.attn", "joint.2.norm", "joint.3.context_norm"],
    "sd35-medium": ["joint.1", "joint.0.attn2", "joint.2.context_mlp", "joint.0.norm"],
    "flux": ["joint.0", "single.1.attn", "single.2.mlp_proj", "single.0.norm", "joint.1.context_norm"],
}


def _out(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0]


@pytest.mark.parametrize("family", list(TINY_MODELS))
@pytest.mark.parametrize("mode", ["identity", "mean"])
def test_subcomponent_plan_round_trips(tmp_path, family, mode):
    model = TINY_MODELS[family]()
    kwargs = dummy_inputs(model)
    means = calibrate_norms(model, [kwargs])
    plan = Plan.for_model(model, PLANS[family], norm_mode=mode)
    prune_(model, plan, means)
    save(model, tmp_path / "out")
    loaded = load(tmp_path / "out")
    assert torch.allclose(_out(loaded, kwargs), _out(model, kwargs), atol=1e-6)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert [s["stage"] for s in manifest["history"]] == ["prune"]
    assert manifest["history"][0]["plan"]["units"] == [u.key for u in plan.units]


@pytest.mark.parametrize("cls,make,units", [
    (SD3Transformer2DModel, lambda: tiny_sd3(num_layers=5, dual_attention_layers=(1, 3)), ["joint.0", "joint.3"]),
    (FluxTransformer2DModel, tiny_flux, ["joint.1", "single.0", "single.2"]),
])
def test_block_plan_loads_with_plain_diffusers(tmp_path, cls, make, units):
    model = make()
    kwargs = dummy_inputs(model)
    prune_(model, Plan.for_model(model, units))
    save(model, tmp_path / "out")
    plain = cls.from_pretrained(tmp_path / "out")
    assert torch.allclose(_out(plain, kwargs), _out(model, kwargs), atol=1e-6)
    assert torch.allclose(_out(load(tmp_path / "out"), kwargs), _out(model, kwargs), atol=1e-6)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_pruned_pipeline_folder_generates_through_diffusers(tmp_path, family):
    pipe = tiny_pipeline(family)
    pipe.save_pretrained(tmp_path / "pipe")
    model = pipe.transformer
    units = ["joint.0"] if family == "sd3" else ["single.1"]
    plan = Plan.for_model(model, units)
    prune_(model, plan)
    save(model, tmp_path / "pruned", source=tmp_path / "pipe")
    plain = DiffusionPipeline.from_pretrained(tmp_path / "pruned")  # whole blocks: no hprune needed
    image = tiny_generate(plain)
    assert image.shape == (16, 16, 3) and np.isfinite(image).all()
    np.testing.assert_allclose(image, tiny_generate(pipe), atol=1e-5)


def test_subcomponent_pipeline_loads_with_hprune(tmp_path):
    pipe = tiny_pipeline("sd3")
    pipe.save_pretrained(tmp_path / "pipe")
    plan = Plan.for_model(pipe.transformer, ["joint.1.attn", "joint.2.mlp"])
    prune_(pipe.transformer, plan)
    save(pipe.transformer, tmp_path / "pruned", source=tmp_path / "pipe")
    loaded = load_pipeline(tmp_path / "pruned")
    np.testing.assert_allclose(tiny_generate(loaded), tiny_generate(pipe), atol=1e-5)


def test_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HpruneError, match="not a diffusers model"):
        load(tmp_path / "empty")
    with pytest.raises(HpruneError, match="does not exist"):
        load(tmp_path / "missing")


def test_truncated_weights(tmp_path):
    tiny_sd3().save_pretrained(tmp_path / "m")
    weights = next((tmp_path / "m").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(HpruneError, match="truncated"):
        load(tmp_path / "m")
    weights.write_bytes(b"garbage")
    with pytest.raises(HpruneError, match="not a readable safetensors"):
        load(tmp_path / "m")


def test_unsupported_class(tmp_path):
    from diffusers import AutoencoderKL

    AutoencoderKL(block_out_channels=(4,), norm_num_groups=1).save_pretrained(tmp_path / "vae")
    with pytest.raises(HpruneError, match="does not support AutoencoderKL"):
        load(tmp_path / "vae")


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    model = tiny_sd3()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    with pytest.raises(HpruneError, match="already exists"):
        save(model, tmp_path / "taken")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", fail)
    with pytest.raises(OSError):
        save(model, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written


def test_weights_under_another_safetensors_name_load(tmp_path):
    model = tiny_sd3(num_layers=2)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "diffusion_pytorch_model.safetensors").rename(tmp_path / "m" / "model.safetensors")
    kwargs = dummy_inputs(model)
    assert torch.allclose(_out(load(tmp_path / "m"), kwargs), _out(model, kwargs))


def test_units_of_a_loaded_pruned_model_leave_out_removed_parts(tmp_path):
    model = tiny_flux()
    prune_(model, Plan.for_model(model, PLANS["flux"]))
    save(model, tmp_path / "out")
    listed = {info.unit.key for info in get_adapter(model).units(load(tmp_path / "out"))}
    # current indices: joint.0 is gone, so original joint.1 is joint.0 now
    assert not listed & {"single.1.attn", "single.2.mlp_proj", "single.0.norm", "joint.0.context_norm"}
    assert {"single.1.mlp_proj", "single.2.attn", "joint.0.norm"} <= listed


def test_a_folder_of_an_older_hprune_is_one_sentence(tmp_path):
    tiny_sd3().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "hprune_plan.json").write_text("{}")
    with pytest.raises(HpruneError, match="older hprune"):
        load(tmp_path / "m")


def test_weights_that_do_not_fit_the_manifest_are_one_sentence(tmp_path):
    model = tiny_sd3(num_layers=3)
    prune_(model, Plan.for_model(model, ["joint.0.mlp"]))
    save(model, tmp_path / "out")
    tiny_sd3(num_layers=3).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "diffusion_pytorch_model.safetensors").replace(
        tmp_path / "out" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(HpruneError, match="changed after it was saved"):
        load(tmp_path / "out")


def test_every_saved_file_is_readable_like_any_new_file(tmp_path):
    """Issue #22, item 11: safetensors writes 0600; a saved folder is 0644 throughout
    (pruned and quantized alike)."""
    import os

    from hprune.quant.quantize import QuantConfig, quantize_

    pipe = tiny_pipeline("sd3")
    pipe.save_pretrained(tmp_path / "pipe")
    model = prune_(tiny_sd3(), Plan.for_model(tiny_sd3(), ["joint.1"]))
    save(model, tmp_path / "pruned", source=tmp_path / "pipe")
    quantize_(model, QuantConfig(backend="w4fp8", group_size=0))
    save(model, tmp_path / "quantized")
    mask = os.umask(0)
    os.umask(mask)
    for folder in ("pruned", "quantized"):
        modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in (tmp_path / folder).rglob("*") if p.is_file()}
        assert set(modes.values()) == {oct(0o666 & ~mask)}, modes
