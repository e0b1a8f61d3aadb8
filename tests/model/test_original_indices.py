"""A pruned model with the tools that name blocks by their original index (issue #16):
skip-layer guidance, LoRAs (also on 4-bit models), diffusers' layer-skip guiders, attention
processor dicts, IP-Adapters and caching hooks (ControlNets: test_controlnet.py). Every expected value is computed on the unpruned model
with the same units removed reversibly (hprune.prune.surgery.removed), named by their
original indices."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn as nn
from diffusers import (DiffusionPipeline, FirstBlockCacheConfig, FluxPipeline, PyramidAttentionBroadcastConfig,
                       StableDiffusion3Pipeline, TaylorSeerCacheConfig)

from hprune.planning.plan import Plan
from hprune.model.original_indices import translate_layers, translate_state_dict, with_original_indices
from hprune.core.errors import HpruneError
from hprune.folders import load_pipeline, save
from hprune.core.provenance import record
from hprune.quant.quantize import QuantConfig, quantize_
from hprune.prune.surgery import prune_, removed
from hprune.model.testing import TINY_WIDTH, dummy_inputs, tiny_flux, tiny_generate, tiny_pipeline, tiny_sd3

# Skip-layer guidance needs CFG (guidance_scale > 1) and acts on the steps inside [start, stop).
SLG = dict(guidance_scale=2.0, skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0, steps=3)


def _folders(tmp_path, make_pipe, units):
    """(the unpruned pipeline, loaded by plain diffusers; the same pipeline pruned by `units`,
    saved and loaded by hprune.load_pipeline)."""
    pipe = make_pipe()
    pipe.save_pretrained(tmp_path / "pipe")
    prune_(pipe.transformer, Plan.for_model(pipe.transformer, units))
    save(pipe.transformer, tmp_path / "pruned", source=tmp_path / "pipe")
    original = DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    original.set_progress_bar_config(disable=True)
    return original, load_pipeline(tmp_path / "pruned")


def _lora(transformer, targets, rank=4, seed=1):
    """A random LoRA in diffusers format (original block indices) on every linear of
    `transformer` that `targets` name (as peft's target_modules do: the name or its end)."""
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for name, module in transformer.named_modules():
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            lora[f"transformer.{name}.lora_A.weight"] = 0.3 * torch.randn(rank, module.in_features, generator=gen)
            lora[f"transformer.{name}.lora_B.weight"] = 0.3 * torch.randn(module.out_features, rank, generator=gen)
    return lora


def _out(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0]


def _sd3_10_blocks():
    return tiny_pipeline("sd3", transformer=tiny_sd3(num_layers=10))


# (1) skip-layer guidance


@pytest.mark.parametrize("units", [
    ["joint.0"],  # blocks 7, 8, 9 are now 6, 7, 8
    ["joint.0", "joint.1", "joint.2"],  # untranslated, 7, 8, 9 would all fall past the 7 blocks left
])
def test_skip_guidance_layers_name_blocks_of_the_original_model(tmp_path, units):
    original, pruned = _folders(tmp_path, _sd3_10_blocks, units)
    image = tiny_generate(pruned, skip_guidance_layers=[7, 8, 9], **SLG)
    with removed(original.transformer, units):
        expected = tiny_generate(original, skip_guidance_layers=[7, 8, 9], **SLG)
        unguided = tiny_generate(original, **SLG)
    assert np.abs(expected - unguided).max() > 1e-3  # skip-layer guidance acts
    np.testing.assert_allclose(image, expected, atol=1e-5)


def test_translate_layers_leaves_out_removed_blocks_and_refuses_unknown_ones(caplog):
    units = ["joint.1", "joint.3"]
    original, pruned = tiny_sd3(num_layers=6), tiny_sd3(num_layers=6)
    prune_(pruned, Plan.for_model(pruned, units))
    kwargs = dummy_inputs(original)
    with caplog.at_level("WARNING", logger="hprune"):
        layers = translate_layers(pruned, [1, 2, 4])
    assert [r.getMessage() for r in caplog.records if "joint.1" in r.getMessage()]  # one line names the removed one
    with removed(original, units):
        expected = _out(original, {**kwargs, "skip_layers": [1, 2, 4]})
    assert torch.allclose(_out(pruned, {**kwargs, "skip_layers": layers}), expected, atol=1e-5)
    for bad in (6, -1):
        with pytest.raises(HpruneError, match="does not have block joint"):
            translate_layers(pruned, [bad])


# (2) LoRAs


@pytest.mark.parametrize("make", [tiny_sd3, lambda: tiny_flux(guidance_embeds=True)], ids=["sd3", "flux-dev"])
def test_translated_full_state_dict_is_the_pruned_models(make):
    # a whole-block plan renumbers the survivors and drops the rest: the pruned model's own state dict
    original, pruned = make(), make()
    prune_(pruned, Plan.for_model(pruned, ["joint.0"]))
    expected = pruned.state_dict()
    got = translate_state_dict(pruned, {f"transformer.{k}": v for k, v in original.state_dict().items()})
    assert list(got) == [f"transformer.{k}" for k in expected]
    assert all(torch.equal(got[f"transformer.{k}"], v) for k, v in expected.items())


def test_flux_lora_blocks_keep_their_own_lora(tmp_path):
    units = ["joint.0"]
    original, pruned = _folders(tmp_path, lambda: tiny_pipeline("flux"), units)
    lora = _lora(original.transformer, ("attn.to_q",))
    kwargs = dummy_inputs(original.transformer)
    without = _out(pruned.transformer, kwargs)
    pruned.load_lora_weights(lora, adapter_name="x")
    original.load_lora_weights(lora, adapter_name="x")
    survivors = [i for i in range(original.transformer.config.num_layers) if f"joint.{i}" not in units]
    for new, old in enumerate(survivors):
        got = pruned.transformer.transformer_blocks[new].attn.to_q.lora_A["x"].weight
        assert torch.equal(got, lora[f"transformer.transformer_blocks.{old}.attn.to_q.lora_A.weight"])
    with removed(original.transformer, units):
        expected = _out(original.transformer, kwargs)
        image = tiny_generate(original)
    assert not torch.allclose(without, expected, atol=1e-3)  # the LoRA changes the output
    assert torch.allclose(_out(pruned.transformer, kwargs), expected, atol=1e-5)
    np.testing.assert_allclose(tiny_generate(pruned), image, atol=1e-5)


def test_flux_lora_on_parts_of_pruned_single_blocks(tmp_path, caplog):
    # single.1 lost its attn and single.2 its MLP: their proj_out LoRAs keep the surviving input columns
    units = ["joint.0", "single.1.attn", "single.2.mlp_proj"]
    original, pruned = _folders(tmp_path, lambda: tiny_pipeline("flux"), units)
    lora = _lora(original.transformer, ("attn.to_q", "proj_out", "proj_mlp"))
    kwargs = dummy_inputs(original.transformer)
    with caplog.at_level("WARNING", logger="hprune"):
        pruned.load_lora_weights(lora, adapter_name="x")
    gone = [k for k in lora if any(p in k for p in (".transformer_blocks.0.", ".single_transformer_blocks.1.attn.",
                                                    ".single_transformer_blocks.2.proj_mlp."))]
    assert [r for r in caplog.records if f"left out {len(gone)} of {len(lora)} tensors" in r.getMessage()]
    original.load_lora_weights(lora, adapter_name="x")
    with removed(original.transformer, units):
        expected = _out(original.transformer, kwargs)
    assert torch.allclose(_out(pruned.transformer, kwargs), expected, atol=1e-5)


def test_lora_file_with_adapter_metadata(tmp_path):
    # diffusers' save_lora_weights keeps the LoRA config in the file (here lora_alpha != r, full
    # module names in target_modules and rank_pattern); its module names are translated too
    units = ["joint.0"]
    original, pruned = _folders(tmp_path, lambda: tiny_pipeline("flux"), units)
    joint = "transformer_blocks.1.attn.to_q"  # now transformer_blocks.0
    lora = {**_lora(original.transformer, (joint,), rank=8),
            **_lora(original.transformer, ("single_transformer_blocks.1.attn.to_q",), seed=2)}
    targets = sorted(k.removeprefix("transformer.").removesuffix(".lora_A.weight") for k in lora if "lora_A" in k)
    config = {"r": 4, "lora_alpha": 8, "target_modules": targets, "rank_pattern": {joint: 8}}
    FluxPipeline.save_lora_weights(tmp_path / "lora", {k.removeprefix("transformer."): v for k, v in lora.items()},
                                   transformer_lora_adapter_metadata=config)
    pruned.load_lora_weights(tmp_path / "lora", adapter_name="x")
    original.load_lora_weights(tmp_path / "lora", adapter_name="x")
    kwargs = dummy_inputs(original.transformer)
    with removed(original.transformer, units):
        expected = _out(original.transformer, kwargs)
    assert torch.allclose(_out(pruned.transformer, kwargs), expected, atol=1e-5)


def test_lora_keys_for_another_model_are_one_sentence():
    model = tiny_flux()
    with pytest.raises(HpruneError, match="made for another model"):
        translate_state_dict(model, {"transformer.transformer_blocks.5.attn.to_q.lora_A.weight": torch.zeros(4, 16)})
    with pytest.raises(HpruneError, match="lora_state_dict"):
        translate_state_dict(model, {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 16)})


def test_dummy_inputs_serve_a_flux_dev_model():
    model = tiny_flux(guidance_embeds=True)  # FLUX.1-dev: the guidance scale is an input
    assert torch.isfinite(_out(model, dummy_inputs(model))).all()


# (3) LoRA on a 4-bit model


def _wide_flux(**overrides):  # layers 128 wide, so that w4fp8 quantizes them
    return tiny_flux(attention_head_dim=64, axes_dims_rope=(16, 24, 24), joint_attention_dim=128,
                     pooled_projection_dim=128, **overrides)


def test_lora_on_a_w4fp8_model_says_to_fuse_it_first(tmp_path):
    pipe = tiny_pipeline("flux", transformer=_wide_flux())
    pipe.save_pretrained(tmp_path / "pipe")
    lora = _lora(pipe.transformer, ("attn.to_q",))
    quantize_(pipe.transformer, QuantConfig(backend="w4fp8"))
    save(pipe.transformer, tmp_path / "quantized", source=tmp_path / "pipe")
    with pytest.raises(HpruneError, match=r"fuse_lora\(\)"):
        load_pipeline(tmp_path / "quantized").load_lora_weights(lora)
    # the way the sentence gives: LoRA into the 16-bit model, fused, then quantized
    plain = load_pipeline(tmp_path / "pipe")
    kwargs = dummy_inputs(plain.transformer)
    base = _out(plain.transformer, kwargs)
    plain.load_lora_weights(lora)
    plain.fuse_lora()
    plain.unload_lora_weights()
    assert not torch.allclose(_out(plain.transformer, kwargs), base, atol=1e-3)  # the LoRA is in the weights
    result = quantize_(plain.transformer, QuantConfig(backend="w4fp8"))
    assert "transformer_blocks.0.attn.to_q" in result.quantized
    assert not [name for name, _ in plain.transformer.named_modules() if "lora" in name]
    assert torch.isfinite(_out(plain.transformer, kwargs)).all()


@pytest.mark.parametrize("backend", ["torchao-int4", "torchao-int4-tinygemm"])
def test_lora_on_a_torchao_int4_model_says_to_fuse_it_first(backend):
    # peft's torchao LoRA layer takes int8 weights only. Quantizing needs torchao and a GPU; the
    # refusal reads only the quantize step of the model's history, which this test writes as quantize_ does.
    pipe = with_original_indices(tiny_pipeline("flux"))
    record(pipe.transformer, "quantize", config=asdict(QuantConfig(backend=backend)), quantized=[], kept=[])
    with pytest.raises(HpruneError, match=rf"{backend}-quantized.*fuse_lora\(\)"):
        pipe.load_lora_weights(_lora(pipe.transformer, ("attn.to_q",)))


def test_lora_on_a_bnb_nf4_pruned_model(tmp_path):
    # peft wraps bnb's Linear4bit: the LoRA loads in original indices and acts as on the 16-bit model
    pytest.importorskip("bitsandbytes")
    units, targets = ["joint.0"], ("attn.to_q", "attn.to_k", "ff.net.2", "proj_mlp")
    pipe = tiny_pipeline("flux", transformer=_wide_flux(num_layers=3))
    pipe.save_pretrained(tmp_path / "pipe")
    lora = _lora(pipe.transformer, targets)
    prune_(pipe.transformer, Plan.for_model(pipe.transformer, units))
    quantize_(pipe.transformer, QuantConfig(backend="bnb-nf4"))
    save(pipe.transformer, tmp_path / "quantized", source=tmp_path / "pipe")
    quantized, original = load_pipeline(tmp_path / "quantized"), load_pipeline(tmp_path / "pipe")
    kwargs = dummy_inputs(original.transformer)
    in_bf16 = {k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
    with removed(original.transformer, units):
        plain = _out(original.transformer, kwargs)
    quant_error = (_out(quantized.transformer, in_bf16).float() - plain).abs().max()
    quantized.load_lora_weights(lora, adapter_name="x")
    original.load_lora_weights(lora, adapter_name="x")
    got = quantized.transformer.transformer_blocks[0].attn.to_q.lora_A["x"].weight
    assert torch.equal(got, lora["transformer.transformer_blocks.1.attn.to_q.lora_A.weight"].to(got.dtype))
    with removed(original.transformer, units):
        expected = _out(original.transformer, kwargs)
    error = (_out(quantized.transformer, in_bf16).float() - expected).abs().max()
    assert (expected - plain).abs().max() > 4 * quant_error  # the LoRA matters more than 4-bit error
    assert error < 2 * quant_error


# other things that name blocks by index


def test_layer_skip_config_of_diffusers_guiders_takes_translated_indices():
    # diffusers' SkipLayerGuidance / SmoothedEnergyGuidance take LayerSkipConfig(indices=...)
    from diffusers.hooks import LayerSkipConfig, apply_layer_skip

    units = ["joint.1"]
    original, pruned = tiny_sd3(num_layers=6), tiny_sd3(num_layers=6)
    prune_(pruned, Plan.for_model(pruned, units))
    kwargs = dummy_inputs(original)
    apply_layer_skip(pruned, LayerSkipConfig(indices=translate_layers(pruned, [2, 4]), fqn="transformer_blocks"))
    with removed(original, units):
        apply_layer_skip(original, LayerSkipConfig(indices=[2, 4], fqn="transformer_blocks"))
        expected = _out(original, kwargs)
    assert torch.allclose(_out(pruned, kwargs), expected, atol=1e-5)


class _ScaledProcessor:
    """diffusers' SD3 attention processor with its outputs scaled: tells processors apart."""

    def __init__(self, factor):
        from diffusers.models.attention_processor import JointAttnProcessor2_0

        self.inner, self.factor = JointAttnProcessor2_0(), factor

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        return tuple(None if o is None else o * self.factor for o in out) if isinstance(out, tuple) else out * self.factor


def test_attention_processor_dict_in_original_names():
    # set_attn_processor takes {"transformer_blocks.N.attn.processor": ...} for every attention layer
    units = ["joint.1", "joint.3.attn"]
    original, pruned = tiny_sd3(num_layers=5), tiny_sd3(num_layers=5)
    prune_(pruned, Plan.for_model(pruned, units))
    processors = {name: _ScaledProcessor(1 + 0.2 * i) for i, name in enumerate(original.attn_processors)}
    pruned.set_attn_processor(translate_state_dict(pruned, processors))
    original.set_attn_processor(processors)  # (diffusers empties the dict it is given)
    kwargs = dummy_inputs(original)
    with removed(original, units):
        expected = _out(original, kwargs)
    assert torch.allclose(_out(pruned, kwargs), expected, atol=1e-5)


CACHES = {
    "pab": lambda pipe: PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 10_000),
        current_timestep_callback=lambda: pipe.current_timestep),
    "taylorseer": lambda pipe: TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1),
}


@pytest.mark.parametrize("cache", CACHES)
def test_caching_hooks_find_blocks_by_name_not_original_index(cache):
    units = ["joint.1.attn", "single.1", "single.2.mlp_proj"]
    original, pruned = tiny_pipeline("flux"), tiny_pipeline("flux")
    prune_(pruned.transformer, Plan.for_model(pruned.transformer, units))
    uncached = tiny_generate(pruned, steps=6)
    pruned.transformer.enable_cache(CACHES[cache](pruned))
    image = tiny_generate(pruned, steps=6)
    with removed(original.transformer, units):
        original.transformer.enable_cache(CACHES[cache](original))
        expected = tiny_generate(original, steps=6)
    assert np.abs(image - uncached).max() > 1e-5  # the cache acts
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_first_block_cache_runs_on_a_model_without_its_first_blocks():
    # the reversibly pruned original cannot serve here: its first block would be the removed one
    pipe = tiny_pipeline("flux")
    prune_(pipe.transformer, Plan.for_model(pipe.transformer, ["joint.0", "single.0"]))
    uncached = tiny_generate(pipe, steps=4)
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.0))  # never reuses: the same image
    np.testing.assert_allclose(tiny_generate(pipe, steps=4), uncached, atol=1e-6)


def _flux_ip_adapter(double_blocks: int, clip_dim: int = 8, seed: int = 0) -> dict:
    """A random FLUX IP-Adapter (XLabs layout, as diffusers converts it) for tiny_flux: weights
    `ip_adapter.N.*` for the N-th double block's attention."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: 0.3 * torch.randn(*shape, generator=gen)  # noqa: E731
    context, width = 32, TINY_WIDTH  # tiny_flux's joint_attention_dim and inner width
    layers = {}
    for i in range(double_blocks):
        layers.update({f"{i}.to_k_ip.weight": rand(width, context), f"{i}.to_k_ip.bias": rand(width),
                       f"{i}.to_v_ip.weight": rand(width, context), f"{i}.to_v_ip.bias": rand(width)})
    projection = {"proj.weight": rand(4 * context, clip_dim), "proj.bias": rand(4 * context),
                  "norm.weight": 1 + rand(context), "norm.bias": rand(context)}
    return {"image_proj": projection, "ip_adapter": layers}


def test_flux_ip_adapter_layers_keep_their_own_weights(tmp_path, caplog):
    # diffusers binds `ip_adapter.N.*` to the N-th double block's attention of the model it loads into
    units = ["joint.1", "joint.2.attn"]
    make = lambda: tiny_pipeline("flux", transformer=tiny_flux(num_layers=4))  # noqa: E731
    original, pruned = _folders(tmp_path, make, units)
    plain = load_pipeline(tmp_path / "pruned")
    adapter = _flux_ip_adapter(4)
    load = dict(weight_name="ip_adapter.safetensors", image_encoder_pretrained_model_name_or_path=None)
    with caplog.at_level("WARNING", logger="hprune"):
        pruned.load_ip_adapter(adapter, **load)
    assert [r for r in caplog.records if "IP-Adapter weights of 2 attention layers (original positions 1, 2)" in r.getMessage()]
    original.load_ip_adapter(adapter, **load)
    FluxPipeline.load_ip_adapter(plain, adapter, **load)  # diffusers' own loading, untranslated
    embeds = [torch.randn(2, 1, 8, generator=torch.Generator().manual_seed(2))]
    kwargs = dummy_inputs(original.transformer)

    def out(transformer):  # (the transformer pops the embeddings from the dict it is given)
        return _out(transformer, {**kwargs, "joint_attention_kwargs": {"ip_adapter_image_embeds": embeds}})

    with removed(original.transformer, units):
        expected = out(original.transformer)
    assert not torch.allclose(out(plain.transformer), expected, atol=1e-3)
    assert torch.allclose(out(pruned.transformer), expected, atol=1e-5)


# the load_pipeline integration


def test_load_pipeline_keeps_the_class_of_a_pruned_pipeline(tmp_path):
    _, pruned = _folders(tmp_path, _sd3_10_blocks, ["joint.0"])
    assert isinstance(pruned, StableDiffusion3Pipeline) and type(pruned).__name__ == "StableDiffusion3Pipeline"
    pruned.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "model_index.json").read_text())["_class_name"] == "StableDiffusion3Pipeline"
    assert type(load_pipeline(tmp_path / "pipe")) is StableDiffusion3Pipeline  # nothing pruned: left as it is
