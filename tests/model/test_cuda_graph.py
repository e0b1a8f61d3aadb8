import pytest
import torch
from torch.utils._pytree import tree_flatten

from hprune.model.cuda_graph import CudaGraphSteps, disable_cuda_graphs, enable_cuda_graphs, signature
from hprune.model.testing import tiny_sd3


def sd3_inputs(batch: int = 1, device: str = "cpu", seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    kw = dict(hidden_states=torch.randn(batch, 4, 8, 8, generator=g), encoder_hidden_states=torch.randn(batch, 5, 32, generator=g),
              pooled_projections=torch.randn(batch, 16, generator=g), timestep=torch.full((batch,), 500.0))
    return {k: v.to(device, dtype if k != "timestep" else torch.float32) for k, v in kw.items()}


def key(*args, **kwargs):
    return signature(*tree_flatten((args, kwargs)))


def test_signature_names_what_a_graph_depends_on():
    x = torch.zeros(2, 3)
    assert key(x) is None  # CPU tensors are never captured
    if torch.cuda.is_available():
        a, b = torch.zeros(2, 3, device="cuda"), torch.ones(2, 3, device="cuda")
        assert key(a, skip=[7, 8]) == key(b, skip=[7, 8])  # values of tensors do not matter
        assert key(a, skip=[7, 8]) != key(a, skip=[7])  # non-tensor values do
        assert key(a) != key(torch.zeros(3, 3, device="cuda"))  # shapes do
    assert key(1, flag=True) != key(1, flag=False)
    assert key(1, extra=object.__new__(type("Unhashable", (), {"__hash__": None}))) is None


def test_cpu_model_runs_eagerly_and_enable_is_undone():
    model = tiny_sd3(num_layers=2).eval()
    kw = sd3_inputs()
    with torch.no_grad():
        ref = model(**kw).sample
        steps = enable_cuda_graphs(model)
        assert enable_cuda_graphs(model) is steps  # enabling twice wraps once
        assert torch.equal(model(**kw).sample, ref)
    assert steps.captures == 0 and not steps.graphs
    disable_cuda_graphs(model)
    assert "forward" not in model.__dict__
    with torch.no_grad():
        assert torch.equal(model(**kw).sample, ref)


@pytest.mark.gpu
def test_replays_match_eager_calls_and_capture_once_per_signature():
    model = tiny_sd3(num_layers=2).to("cuda", torch.bfloat16).eval()
    first, second, wide = sd3_inputs(1, "cuda", 0, torch.bfloat16), sd3_inputs(1, "cuda", 1, torch.bfloat16), sd3_inputs(2, "cuda", 2, torch.bfloat16)
    with torch.no_grad():
        refs = [model(**kw, return_dict=False)[0] for kw in (first, second, wide)]
        steps = enable_cuda_graphs(model)
        outs = [model(**kw, return_dict=False)[0] for kw in (first, second, wide, first)]
    assert steps.captures == 2  # batch 1 once (the second call replays with new values), batch 2 once
    for out, ref in zip(outs, refs + refs[:1]):
        assert torch.allclose(out, ref, atol=2e-2), (out - ref).abs().max()
    assert not torch.equal(outs[0], outs[1])  # each replay read its own call's inputs
    assert outs[0].data_ptr() != outs[3].data_ptr()  # outputs are clones the caller keeps
    with torch.enable_grad():
        model(**first)  # autograd on: the plain forward, no new capture
    assert steps.captures == 2


@pytest.mark.gpu
def test_generate_with_compile_and_cuda_graph_draws_the_eager_images(tmp_path):
    import numpy as np
    from PIL import Image

    from hprune.cli import main
    from hprune.toy.pipeline import ArchConfig, build_pipeline
    from hprune.toy.prompts import VOCABULARY

    torch.manual_seed(0)
    arch = ArchConfig(family="sd3", width=32, head_dim=16, num_layers=2, text_width=32)
    build_pipeline(arch, VOCABULARY).save_pretrained(tmp_path / "model")
    base = ["generate", "--model", str(tmp_path / "model"), "--split", "val", "--limit", "4", "--steps", "2"]
    assert main(base + ["--out", str(tmp_path / "eager")]) == 0
    assert main(base + ["--out", str(tmp_path / "fast"), "--compile", "--cuda-graph"]) == 0
    for name in sorted(p.name for p in (tmp_path / "eager").glob("*.png")):
        a, b = (np.asarray(Image.open(tmp_path / d / name), dtype=np.int16) for d in ("eager", "fast"))
        assert np.abs(a - b).mean() < 2.0, name
