"""ControlNet residuals made for the original model, on a pruned transformer (issue #16).
The expected value is the unpruned transformer with the same units removed reversibly
(hprune.prune.surgery.removed), given the same residuals."""

import numpy as np
import pytest
import torch

from hprune.planning.plan import Plan
from hprune.model.controlnet import controlnet_residuals, install_controlnet_translation
from hprune.model.original_indices import with_original_indices
from hprune.prune.surgery import prune_, removed
from hprune.model.testing import TINY_WIDTH, dummy_inputs, tiny_flux, tiny_generate, tiny_pipeline, tiny_sd3

TOKENS = 16  # image tokens of dummy_inputs on the tiny models


def _residuals(count: int, seed: int, batch: int = 2) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, TOKENS, TINY_WIDTH, generator=gen) for _ in range(count)]


def _out(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0]


CASES = {
    # SD3.5 Large-like spread: fewer residuals than blocks (interval 10/3)
    "sd3-3-of-10": (lambda: tiny_sd3(num_layers=10), ["joint.3", "joint.4", "joint.5.attn", "joint.8"],
                    {"block_controlnet_hidden_states": 3}),
    "sd3-one-per-block": (lambda: tiny_sd3(num_layers=6), ["joint.2"], {"block_controlnet_hidden_states": 6}),
    "flux": (lambda: tiny_flux(num_layers=4, num_single_layers=4), ["joint.1", "single.2", "single.3.attn"],
             {"controlnet_block_samples": 2, "controlnet_single_block_samples": 2}),
    "flux-xlabs-repeat": (lambda: tiny_flux(num_layers=5, num_single_layers=1), ["joint.2", "joint.3"],
                          {"controlnet_block_samples": 2, "controlnet_blocks_repeat": True}),
}


@pytest.mark.parametrize("case", CASES)
def test_controlnet_residuals_land_on_the_original_blocks(case):
    make, units, counts = CASES[case]
    original, pruned = make(), make()
    prune_(pruned, Plan.for_model(pruned, units))
    kwargs = dict(dummy_inputs(original))
    for seed, (name, count) in enumerate(counts.items()):
        kwargs[name] = count if isinstance(count, bool) else _residuals(count, seed)
    with removed(original, units):
        expected = _out(original, kwargs)
    untranslated = _out(pruned, kwargs)
    install_controlnet_translation(pruned)
    assert not torch.allclose(untranslated, expected, atol=1e-3)  # what diffusers does on its own
    assert torch.allclose(_out(pruned, kwargs), expected, atol=1e-5)


def test_pipelines_from_load_pipeline_translate_controlnet_residuals():
    # with_original_indices (what hprune.load_pipeline applies) installs it on the transformer,
    # which ControlNet pipelines built from the pipeline's components share
    units = ["joint.1"]
    original, pruned = tiny_sd3(num_layers=4), tiny_sd3(num_layers=4)
    prune_(pruned, Plan.for_model(pruned, units))
    pipe = with_original_indices(tiny_pipeline("sd3", transformer=pruned))
    with_original_indices(pipe)  # applying it twice translates once
    kwargs = {**dummy_inputs(original), "block_controlnet_hidden_states": _residuals(2, seed=3)}
    with removed(original, units):
        expected = _out(original, kwargs)
    assert torch.allclose(_out(pipe.transformer, kwargs), expected, atol=1e-5)


def _tiny_sd3_controlnet():
    from diffusers import SD3ControlNetModel

    torch.manual_seed(5)
    net = SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                             num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=TINY_WIDTH,
                             pooled_projection_dim=16, out_channels=4, pos_embed_max_size=16, qk_norm="rms_norm")
    with torch.no_grad():  # diffusers starts a ControlNet's output layers at zero
        for layer in [*net.controlnet_blocks, net.pos_embed_input.proj]:
            layer.weight.normal_(0, 0.3)
    return net.eval()


def test_sd3_controlnet_pipeline_on_a_pruned_model_from_load_pipeline(tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusion3ControlNetPipeline

    from hprune.folders import load_pipeline, save

    units, controlnet = ["joint.2", "joint.3"], _tiny_sd3_controlnet()
    pipe = tiny_pipeline("sd3", transformer=tiny_sd3(num_layers=6))
    pipe.save_pretrained(tmp_path / "pipe")
    prune_(pipe.transformer, Plan.for_model(pipe.transformer, units))
    save(pipe.transformer, tmp_path / "pruned", source=tmp_path / "pipe")
    pruned, original = load_pipeline(tmp_path / "pruned"), DiffusionPipeline.from_pretrained(tmp_path / "pipe")

    def generate(pipe):
        torch.manual_seed(0)  # the pipeline samples the control image's VAE latents without a generator
        control = StableDiffusion3ControlNetPipeline(**pipe.components, controlnet=controlnet)
        control.set_progress_bar_config(disable=True)
        return tiny_generate(control, control_image=torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))

    image = generate(pruned)
    with removed(original.transformer, units):
        expected = generate(original)
    assert np.abs(image - tiny_generate(pruned)).max() > 1e-2  # the ControlNet acts
    np.testing.assert_allclose(image, expected, atol=1e-5)


def test_a_removed_first_block_leaves_its_residual_out_with_one_line(caplog):
    units = ["joint.0", "joint.1"]
    original, pruned = tiny_sd3(num_layers=4), tiny_sd3(num_layers=4)
    prune_(pruned, Plan.for_model(pruned, units))
    residuals = _residuals(4, seed=1)
    with caplog.at_level("WARNING", logger="hprune"):
        spread = controlnet_residuals(pruned, residuals)
    assert [r for r in caplog.records if "joint.0, joint.1 are left out" in r.getMessage()]
    kwargs = dummy_inputs(original)
    with removed(original, units):  # the same, with nothing added before the first remaining block
        expected = _out(original, {**kwargs, "block_controlnet_hidden_states": [r * 0 for r in residuals[:2]] + residuals[2:]})
    assert torch.allclose(_out(pruned, {**kwargs, "block_controlnet_hidden_states": spread}), expected, atol=1e-5)
