import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.toy.pipeline import (
    CHECKPOINTS,
    SHIPPED,
    ArchConfig,
    ShapesFluxPipeline,
    ShapesSD3Pipeline,
    build_pipeline,
    load_pipeline,
    to_model_space,
    to_uint8,
)
from hprune.toy.prompts import VOCABULARY

PROMPTS = ["a red circle", "two blue squares", "the digit 3 in white on a large green square"]


def tiny(family: str, **kw) -> ArchConfig:
    extra = {"num_single_layers": 2} if family == "flux" else {}
    return ArchConfig(family=family, width=32, head_dim=16, num_layers=2, text_width=32, max_length=16, **extra, **kw)


@pytest.fixture(params=["sd3", "flux"])
def pipe(request):
    torch.manual_seed(0)
    return build_pipeline(tiny(request.param, guidance_scale=2.0), VOCABULARY)


def test_arch_config_names_every_problem():
    with pytest.raises(HpruneError, match="family must be one of.*width 30 must be a multiple of head_dim 16"):
        ArchConfig(family="sdxl", width=30, head_dim=16)
    with pytest.raises(HpruneError, match="single block"):
        ArchConfig(family="flux", num_single_layers=0)


def test_builds_the_right_diffusers_classes():
    sd3, flux = build_pipeline(tiny("sd3"), VOCABULARY), build_pipeline(tiny("flux"), VOCABULARY)
    assert isinstance(sd3, ShapesSD3Pipeline) and type(sd3.transformer).__name__ == "SD3Transformer2DModel"
    assert sd3.transformer.config.qk_norm == "rms_norm"
    assert isinstance(flux, ShapesFluxPipeline) and type(flux.transformer).__name__ == "FluxTransformer2DModel"
    assert len(flux.transformer.single_transformer_blocks) == 2


def test_images_depend_on_their_seed_only(pipe):
    batch = pipe(PROMPTS, num_inference_steps=2, seeds=[5, 6, 7], output_type="pt").images
    alone = pipe(PROMPTS[1:2], num_inference_steps=2, seeds=[6], output_type="pt").images
    assert batch.shape == (3, 3, 64, 64)
    torch.testing.assert_close(batch[1:2], alone, atol=1e-4, rtol=0)
    other = pipe(PROMPTS[1:2], num_inference_steps=2, seeds=[8], output_type="pt").images
    assert not torch.allclose(alone, other)


def test_uint8_output_and_guidance_changes_the_image(pipe):
    images = pipe(PROMPTS[:1], num_inference_steps=2, seeds=[0]).images
    assert images.dtype == np.uint8 and images.shape == (1, 64, 64, 3)
    plain = pipe(PROMPTS[:1], num_inference_steps=2, seeds=[0], guidance_scale=1.0, output_type="pt").images
    guided = pipe(PROMPTS[:1], num_inference_steps=2, seeds=[0], guidance_scale=3.0, output_type="pt").images
    assert not torch.allclose(plain, guided)


def test_seed_count_must_match(pipe):
    with pytest.raises(HpruneError, match="2 seeds for 3 prompts"):
        pipe(PROMPTS, seeds=[1, 2])


def test_flux_velocity_keeps_pixels_in_place():
    # Patchify -> transformer -> unpatchify must map each pixel back to where it was:
    # with the transformer replaced by identity, velocity(x) == x.
    pipe = build_pipeline(tiny("flux"), VOCABULARY)
    pipe.transformer.forward = lambda hidden_states, **kw: (hidden_states,)
    x = torch.randn(2, 3, 64, 64)
    seq, pooled = pipe.text_encoder.encode(PROMPTS[:2])
    torch.testing.assert_close(pipe.velocity(x, torch.rand(2), seq, pooled), x)


def test_pixel_conversions_round_trip():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_model_space(pixels)), pixels)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_save_load_round_trip(tmp_path, family):
    torch.manual_seed(0)
    pipe = build_pipeline(tiny(family, guidance_scale=1.5, shift=2.0), VOCABULARY)
    pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(tmp_path)
    assert type(loaded) is type(pipe) and loaded.config.guidance_scale == 1.5
    assert loaded.scheduler.config.shift == 2.0
    a = pipe(PROMPTS, num_inference_steps=2, output_type="pt").images
    b = loaded(PROMPTS, num_inference_steps=2, output_type="pt").images
    torch.testing.assert_close(a, b)


def test_load_errors_say_what_to_pass(tmp_path):
    with pytest.raises(HpruneError, match="neither shapes-sd3 nor shapes-flux nor a pipeline folder"):
        load_pipeline(tmp_path / "nowhere")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(HpruneError, match="holds a StableDiffusionPipeline pipeline"):
        load_pipeline(tmp_path)


def test_damaged_folder_is_a_clear_error(tmp_path):
    build_pipeline(tiny("sd3"), VOCABULARY).save_pretrained(tmp_path)
    weights = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    from hprune.folders import load_pipeline as load_any

    with pytest.raises(HpruneError, match="not a readable safetensors file"):
        load_any(tmp_path)


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_teachers_meet_the_spec(name):
    if not (CHECKPOINTS / name / "model_index.json").exists():
        pytest.skip(f"{name} not trained yet")
    pipe = load_pipeline(name)
    cfg = pipe.transformer.config
    if name == "shapes-sd3":
        assert len(pipe.transformer.transformer_blocks) >= 16 and cfg.qk_norm == "rms_norm"
    else:
        assert len(pipe.transformer.transformer_blocks) >= 1 and len(pipe.transformer.single_transformer_blocks) >= 1
    assert pipe.scheduler.__class__.__name__ == "FlowMatchEulerDiscreteScheduler"
    assert _folder_mb(CHECKPOINTS / name) < 20
