import inspect

import pytest
import torch

from hprune.model.attention import (
    CUDNN, DEFAULT, WITHOUT_CUDNN, attention_modules, restore_default_attention, use_fastest_attention,
)
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_sd3

FAMILIES = {"sd3": tiny_sd3, "flux": tiny_flux}


@pytest.fixture
def fake_gpu(monkeypatch):
    """A visible CUDA GPU of a chosen compute capability; cuDNN's attention enabled again after."""
    def visible(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    yield visible
    torch.backends.cuda.enable_cudnn_sdp(True)


def _model(family, head_dim=64, heads=1, **kw):
    width = {"sd3": dict(caption_projection_dim=heads * head_dim),
             "flux": dict(axes_dims_rope=(head_dim // 4, head_dim // 4, head_dim // 2))}[family]
    return FAMILIES[family](attention_head_dim=head_dim, num_attention_heads=heads, **width, **kw)


def test_without_a_gpu_nothing_changes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = _model("sd3")
    before = [type(m.processor) for m in attention_modules(model)]
    assert use_fastest_attention(model) == DEFAULT
    assert [type(m.processor) for m in attention_modules(model)] == before


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hopper_at_head_size_64_wraps_every_processor_keeping_its_signature_and_output(fake_gpu, family):
    fake_gpu((9, 0))
    model = _model(family)
    inputs = dummy_inputs(model)
    with torch.no_grad():
        before = model(**inputs)[0]
    originals = [m.processor for m in attention_modules(model)]
    assert use_fastest_attention(model) == CUDNN and use_fastest_attention(model) == CUDNN  # twice: no double wrap
    for module, original in zip(attention_modules(model), originals):
        wrapped = module.processor
        assert isinstance(wrapped, type(original)) and wrapped._hprune_inner is original
        assert inspect.signature(wrapped.__call__).parameters.keys() == inspect.signature(original.__call__).parameters.keys()
    assert len({type(m.processor) for m in attention_modules(model)}) == len({type(p) for p in originals})  # one class each
    with torch.no_grad():
        assert torch.equal(model(**inputs)[0], before)  # on CPU the CUDA backend choice changes nothing
    restore_default_attention(model)
    assert [m.processor for m in attention_modules(model)] == originals


@pytest.mark.parametrize("capability,head_dim", [((9, 0), 28), ((8, 0), 64)])
def test_other_head_sizes_and_older_gpus_turn_cudnn_off_and_wrap_nothing(fake_gpu, capability, head_dim):
    # head size 28 (the shapes teachers) crashed cuDNN's attention on torch 2.11
    fake_gpu(capability)
    model = _model("sd3", head_dim)
    assert use_fastest_attention(model) == WITHOUT_CUDNN
    assert not torch.backends.cuda.cudnn_sdp_enabled()
    assert not any(hasattr(m.processor, "_hprune_inner") for m in attention_modules(model))


@pytest.mark.gpu
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_on_hopper_compiled_blocks_run_cudnns_kernel_without_recompiling(family):
    from hprune.model.compile import compile_blocks_

    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("needs a Hopper GPU")
    model = _model(family, 64, heads=4, num_layers=3).to("cuda", torch.bfloat16)
    inputs = {k: v.to("cuda", torch.bfloat16 if v.is_floating_point() else v.dtype) if torch.is_tensor(v) else v
              for k, v in dummy_inputs(model).items()}
    with torch.no_grad():
        expected = model(**inputs)[0]
        assert use_fastest_attention(model) == CUDNN
        torch._dynamo.reset()
        compile_blocks_(model, fullgraph=True, dynamic=False)
        model(**inputs)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            out = model(**inputs)[0]
            torch.cuda.synchronize()
    names = " ".join(e.name.lower() for e in prof.events())
    assert "cudnn" in names and "flash_fwd" not in names, names[:600]
    assert torch.allclose(out.float(), expected.float(), atol=5e-2, rtol=5e-2)


def test_a_wrapped_model_pickles_and_comes_back_wrapped(fake_gpu):
    import pickle

    fake_gpu((9, 0))
    model = _model("sd3")
    use_fastest_attention(model)
    back = pickle.loads(pickle.dumps(model))
    assert all(hasattr(m.processor, "_hprune_inner") for m in attention_modules(back))
    restore_default_attention(back)
    assert not any(hasattr(m.processor, "_hprune_inner") for m in attention_modules(back))
