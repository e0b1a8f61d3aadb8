import importlib.util

import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.core.provenance import base_config
from hprune.folders import load, save
from hprune.quant import get_backend
from hprune.quant.quantize import QuantConfig, quant_state, quantize_, select_linears, weight_bytes
from hprune.model.testing import tiny_sd3


def model128():
    """A tiny SD3 whose linears are 128 wide, so every backend can take them."""
    return tiny_sd3(num_layers=2, attention_head_dim=64, joint_attention_dim=128, caption_projection_dim=128,
                    pooled_projection_dim=128).to(torch.bfloat16)


def inputs(model):
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(1, 4, 8, 8, generator=g).bfloat16(), encoder_hidden_states=torch.randn(1, 5, 128, generator=g).bfloat16(),
                pooled_projections=torch.randn(1, 128, generator=g).bfloat16(), timestep=torch.tensor([500.0]))


def forward(model):
    with torch.no_grad():
        return model(**inputs(model)).sample.float()


def test_config_names_every_bad_field():
    with pytest.raises(HpruneError) as err:
        QuantConfig(backend="nope", group_size=100, compute_dtype="int8")
    for word in ("backend 'nope'", "group_size 100", "compute_dtype 'int8'"):
        assert word in str(err.value)
    with pytest.raises(HpruneError, match="w4fp8 takes group_size 128 or 0"):
        QuantConfig(backend="w4fp8", group_size=64)
    with pytest.raises(HpruneError, match="torchao-int4-tinygemm computes in bfloat16 only"):
        QuantConfig(backend="torchao-int4-tinygemm", compute_dtype="float16")


def test_w4fp8_with_no_skip_quantizes_every_linear_and_stays_close():
    model = model128()
    ref = forward(model)
    before = weight_bytes(model)
    result = quantize_(model, QuantConfig(backend="w4fp8", skip=()))
    linears = [n for n, m in model128().named_modules() if type(m) is torch.nn.Linear]
    assert result.kept == [] and result.quantized == linears
    assert weight_bytes(model) < 0.4 * before
    err = ((forward(model) - ref).norm() / ref.norm()).item()
    assert 0 < err < 0.2


def test_w4fp8_keeps_the_input_and_output_layers_in_16_bit_by_default():
    model = model128()
    result = quantize_(model, QuantConfig(backend="w4fp8"))
    assert result.kept == ["context_embedder", "proj_out"]  # tiny SD3's x_embedder is a conv (pos_embed.proj)
    assert type(model.proj_out) is torch.nn.Linear and type(model.context_embedder) is torch.nn.Linear
    assert "transformer_blocks.0.attn.proj_out" not in result.kept  # patterns match full names only


def test_other_backends_quantize_every_linear_by_default_and_the_config_records_the_patterns():
    assert QuantConfig(backend="torchao-int4").skip == ()
    assert QuantConfig(backend="w4fp8").skip == ("proj_out", "x_embedder", "context_embedder")
    assert QuantConfig(backend="w4fp8", skip="proj_out").skip == ("proj_out",)  # one pattern, not its letters
    assert QuantConfig(backend="w4fp8", skip=["a", "b"]).skip == ("a", "b")


def test_a_default_kept_folder_loads_back_with_the_same_layers_kept(tmp_path):
    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8"))
    out = forward(model)
    save(model, tmp_path / "q")
    loaded = load(tmp_path / "q")
    assert type(loaded.proj_out) is torch.nn.Linear and torch.equal(forward(loaded), out)
    assert quant_state(loaded)[0].skip == ("proj_out", "x_embedder", "context_embedder")


def test_skip_patterns_keep_layers_in_16_bit():
    model = model128()
    result = quantize_(model, QuantConfig(backend="w4fp8", skip=("proj_out", "*.norm1.linear")))
    assert "proj_out" in result.kept and "transformer_blocks.0.norm1.linear" in result.kept
    assert type(model.proj_out) is torch.nn.Linear


def test_quantizing_twice_is_refused():
    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8"))
    with pytest.raises(HpruneError, match="already quantized"):
        quantize_(model, QuantConfig(backend="w4fp8"))


def test_w4fp8_save_load_round_trip(tmp_path):
    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8", group_size=0))
    out = forward(model)
    save(model, tmp_path / "q")
    loaded = load(tmp_path / "q")
    assert torch.allclose(forward(loaded), out)
    assert quant_state(loaded)[0].group_size == 0


def test_saving_over_a_non_empty_folder_is_refused(tmp_path):
    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8"))
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "x").write_text("x")
    with pytest.raises(HpruneError, match="already exists"):
        save(model, tmp_path / "q")


def test_truncated_weights_fail_clearly(tmp_path):
    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8"))
    folder = save(model, tmp_path / "q")
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(HpruneError, match="truncated"):
        load(folder)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
def test_bnb_nf4_save_load_keeps_the_4bit_weights(tmp_path):
    import bitsandbytes as bnb

    model = model128()
    quantize_(model, QuantConfig(backend="bnb-nf4"))
    folder = save(model, tmp_path / "q")
    assert "quantization_config" in (folder / "config.json").read_text()  # diffusers can load it too
    loaded = load(folder)
    for name in ("proj_out", "transformer_blocks.1.ff.net.2"):
        a, b = model.get_submodule(name).weight, loaded.get_submodule(name).weight
        assert isinstance(b, bnb.nn.Params4bit)
        assert torch.equal(bnb.functional.dequantize_4bit(a.data, a.quant_state), bnb.functional.dequantize_4bit(b.data, b.quant_state))


def test_missing_package_and_missing_gpu_say_what_to_do(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(HpruneError, match="pip install bitsandbytes"):
        quantize_(model128(), QuantConfig(backend="bnb-nf4"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torchao" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HpruneError, match="needs a CUDA GPU"):
        quantize_(model128(), QuantConfig(backend="torchao-int4"))


def test_quantize_command_end_to_end(tmp_path):
    from hprune.cli import main

    model = model128()
    model.save_pretrained(tmp_path / "model")
    assert main(["quantize", str(tmp_path / "model"), "--backend", "w4fp8", "--out", str(tmp_path / "q"), "--device", "cpu"]) == 0
    loaded = load(tmp_path / "q")
    ref = forward(model)
    assert ((forward(loaded) - ref).norm() / ref.norm()) < 0.2
    assert main(["quantize", str(tmp_path / "model"), "--backend", "w4fp8", "--out", str(tmp_path / "q")]) == 1  # exists
    assert main(["quantize", str(tmp_path / "q"), "--backend", "w4fp8", "--out", str(tmp_path / "q2")]) == 1  # twice
    assert not (tmp_path / "q2").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["bnb-nf4", "torchao-int4", "w4fp8"])
def test_backends_run_on_gpu_and_load_back(backend, tmp_path):
    skip_without_packages(backend)
    model = model128().cuda()
    ref = forward_cuda(model)
    quantize_(model, QuantConfig(backend=backend))
    out = forward_cuda(model)
    assert ((out - ref).norm() / ref.norm()) < 0.25
    loaded = load(save(model, tmp_path / "q"), device="cuda")
    assert torch.allclose(forward_cuda(loaded), out, atol=1e-2)


@pytest.mark.parametrize("backend", ["torchao-int4", "torchao-int4-tinygemm"])
def test_torchao_int4_keeps_the_layers_its_groups_do_not_fit(backend):
    """torchao would leave a 96-wide input as it was without a word (groups of 128): it is listed as kept instead."""
    model = torch.nn.Sequential(torch.nn.Linear(96, 256), torch.nn.GELU(), torch.nn.Linear(256, 112))
    result = select_linears(model, QuantConfig(backend=backend))
    assert (result.quantized, result.kept) == (["2"], ["0"])
    assert select_linears(model, QuantConfig(backend=backend, group_size=32)).quantized == ["0", "2"]
    assert select_linears(model, QuantConfig(backend="torchao-fp8")).quantized == ["0", "2"]


@pytest.mark.gpu
def test_torchao_int4_quantizes_a_float32_model(tmp_path):
    """The ablation's twins quantize float32 students: the layers torchao's int4 takes go to the compute dtype first."""
    skip_without_packages("torchao-int4-tinygemm")
    model = model128().float().cuda()
    kw = {k: v.float().cuda() for k, v in inputs(model).items()}
    with torch.no_grad():
        ref = model(**kw).sample
        quantize_(model, QuantConfig(backend="torchao-int4-tinygemm"))
        out = model(**kw).sample
    assert out.dtype == torch.float32 and ((out - ref).norm() / ref.norm()) < 0.25


@pytest.mark.gpu
def test_bnb_folder_loads_in_plain_diffusers(tmp_path):
    from diffusers import SD3Transformer2DModel

    skip_without_packages("bnb-nf4")
    model = model128().cuda()
    quantize_(model, QuantConfig(backend="bnb-nf4"))
    out = forward_cuda(model)
    folder = save(model, tmp_path / "q")
    loaded = SD3Transformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert torch.allclose(forward_cuda(loaded), out, atol=1e-2)


def skip_without_packages(backend: str) -> None:
    """An optional backend's GPU test skips where its package is not installed (the lent GPU has no bnb or torchao)."""
    for package in get_backend(backend).packages:
        pytest.importorskip(package)


def forward_cuda(model):
    with torch.no_grad():
        kw = {k: v.cuda() for k, v in inputs(model).items()}
        return model(**kw).sample.float()


def test_a_plain_torch_module_is_quantized_and_recorded():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    x = torch.randn(5, 3)
    reference = model(x)
    result = quantize_(model, QuantConfig(backend="w4fp8"))
    assert result.quantized == ["0", "2"] and quant_state(model) is not None
    assert ((model(x) - reference).norm() / reference.norm()) < 0.2
    with pytest.raises(HpruneError, match="already quantized"):
        quantize_(model, QuantConfig(backend="w4fp8"))


def test_a_w4fp8_folder_is_refused_by_plain_diffusers_instead_of_loading_random_weights(tmp_path):
    from diffusers import SD3Transformer2DModel

    model = model128()
    quantize_(model, QuantConfig(backend="w4fp8"))
    folder = save(model, tmp_path / "q")
    with pytest.raises(ValueError, match="Unknown quantization type, got hprune"):
        SD3Transformer2DModel.from_pretrained(folder)
    assert load(folder).config.num_layers == model.config.num_layers  # hprune.load reads it


def test_a_transformers_text_encoder_is_quantized_and_its_config_recorded():
    # `hprune bench --text-encoders --t5-quant` quantizes a T5 encoder, whose config is no mapping
    from transformers import T5Config, T5EncoderModel

    from hprune.bench.text_encoders import T5_KEEP

    encoder = T5EncoderModel(T5Config(d_model=128, d_ff=256, d_kv=32, num_heads=4, num_layers=1, vocab_size=64,
                                      feed_forward_proj="gated-gelu"))
    quantize_(encoder, QuantConfig(backend="w4fp8", skip=T5_KEEP["w4fp8"]))
    assert quant_state(encoder) is not None
    assert encoder(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state.shape == (1, 3, 128)  # T5 reads wo.weight
    assert base_config(encoder)["d_model"] == 128 and base_config(encoder)["_class_name"] == "T5EncoderModel"
