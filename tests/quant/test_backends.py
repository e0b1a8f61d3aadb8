"""Quantization on a CPU-only machine (issue #22, items 6 and 8): bnb-nf4 works end to
end (quantize -> save -> load -> generate); a backend that needs a GPU is refused in one
sentence before the model loads; a folder that cannot load here says why when loading."""

import importlib.util

import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.quant import get_backend

needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="bitsandbytes not installed (pip install 'hprune[quant]')")


@needs_bnb
def test_bnb_nf4_quantize_save_load_generate_on_cpu(tmp_path):
    from hprune.folders import load_pipeline, save
    from hprune.quant.quantize import QuantConfig, quantize_
    from hprune.model.testing import tiny_generate, tiny_pipeline

    tiny_pipeline("sd3").save_pretrained(tmp_path / "pipe")
    pipe = load_pipeline(tmp_path / "pipe", torch_dtype=torch.bfloat16, device="cpu")  # as `hprune quantize` does
    quantize_(pipe.transformer, QuantConfig(backend="bnb-nf4"))
    image = tiny_generate(pipe)
    save(pipe.transformer, tmp_path / "q", source=tmp_path / "pipe")
    loaded = load_pipeline(tmp_path / "q", device="cpu")
    assert type(loaded.transformer.transformer_blocks[0].attn.to_q).__name__ == "Linear4bit"
    again = tiny_generate(loaded)
    assert again.shape == image.shape and np.isfinite(again).all()
    assert np.allclose(again, image, atol=1e-2)


@pytest.mark.parametrize("backend", ["torchao-int4", "torchao-int4-tinygemm", "torchao-fp8"])
def test_gpu_backends_are_refused_before_the_model_loads(backend, tmp_path, monkeypatch, capsys):
    """--device cpu refuses on any machine; the GPU is named before any package
    (installing torchao would not help on a CPU machine)."""
    import hprune.folders
    from hprune.cli import main
    from hprune.model.testing import tiny_sd3

    tiny_sd3().save_pretrained(tmp_path / "model")

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the backend was checked")

    monkeypatch.setattr(hprune.folders, "load", no_load)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # torchao not installed either
    out = tmp_path / "out"
    assert main(["quantize", str(tmp_path / "model"), "--backend", backend, "--device", "cpu", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: backend '{backend}' needs a CUDA GPU"), err
    assert "bnb-nf4 or w4fp8" in err
    assert not out.exists()


def test_loading_a_folder_whose_backend_is_missing_says_how_to_load_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(HpruneError) as err:
        get_backend("bnb-nf4").check(folder=tmp_path)
    assert str(err.value) == (f"{tmp_path} was quantized with bnb-nf4, which needs bitsandbytes to load; "
                              "install it with `pip install bitsandbytes`.")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HpruneError, match="was quantized with torchao-int4, which needs a CUDA GPU and none is visible"):
        get_backend("torchao-int4").check(folder=tmp_path)


@needs_bnb
def test_bnb_nf4_through_the_commands_on_cpu(tmp_path):
    """The user's path on a CPU machine: hprune quantize, then hprune generate from the folder."""
    import json

    from hprune.cli import main

    assert main(["quantize", "shapes-sd3", "--backend", "bnb-nf4", "--device", "cpu", "--out", str(tmp_path / "q")]) == 0
    assert main(["generate", "--model", str(tmp_path / "q"), "--split", "test", "--limit", "1", "--steps", "1",
                 "--device", "cpu", "--out", str(tmp_path / "gen")]) == 0
    records = [json.loads(l) for l in (tmp_path / "gen" / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 1 and (tmp_path / "gen" / records[0]["path"]).is_file()
