import json

import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.metrics import get_metric

from hprune.model.testing import save_tiny_clip  # noqa: F401  (test_hps imports it from here)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def images(n, seed=0, size=48):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_clip_scores_match_transformers_cosine(clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    metric = get_metric(f"clip:{clip_dir}", device="cpu")
    prompts = ["a red circle", "two blue squares", "a green triangle left of a red circle"]
    imgs = images(3, size=32)  # already at the crop size: no resizing differences
    scores = metric.score(imgs, prompts)
    assert set(scores) == {"clip"} and scores["clip"].shape == (3,)
    model, proc = CLIPModel.from_pretrained(clip_dir), CLIPProcessor.from_pretrained(clip_dir)
    inputs = proc(text=prompts, images=list(imgs), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    expected = 100 * torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).numpy()
    np.testing.assert_allclose(scores["clip"], expected, rtol=1e-3, atol=1e-3)


def test_clip_score_depends_on_image_and_prompt(clip_dir):
    metric = get_metric(f"clip:{clip_dir}", device="cpu")
    a = metric.score(images(2, 0), ["a red circle"] * 2)["clip"]
    b = metric.score(images(2, 0), ["two blue squares"] * 2)["clip"]
    c = metric.score(images(2, 1), ["a red circle"] * 2)["clip"]
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_allclose(a, metric.score(images(2, 0), ["a red circle"] * 2)["clip"])


def test_clip_batches_are_independent(clip_dir, monkeypatch):
    import hprune.metrics.clip as clip_module

    metric = get_metric(f"clip:{clip_dir}", device="cpu")
    prompts = ["a red circle", "two blue squares", "a photo", "a green triangle", "a blue circle"]
    whole = metric.score(images(5), prompts)["clip"]
    monkeypatch.setattr(clip_module, "BATCH", 2)
    np.testing.assert_allclose(metric.score(images(5), prompts)["clip"], whole, rtol=1e-4, atol=1e-4)


def test_missing_or_wrong_clip_path_is_one_sentence(tmp_path):
    with pytest.raises(HpruneError, match="does not exist") as err:
        get_metric(f"clip:{tmp_path / 'nowhere'}")
    assert "\n" not in str(err.value)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{}")
    with pytest.raises(HpruneError, match="not a usable CLIP model folder") as err:
        get_metric(f"clip:{tmp_path / 'junk'}")
    assert "\n" not in str(err.value)
    with pytest.raises(HpruneError, match="needs a local weights folder"):
        get_metric("clip")


def test_mismatched_lengths_are_refused(clip_dir):
    with pytest.raises(HpruneError, match="3 images for 2 prompts"):
        get_metric(f"clip:{clip_dir}", device="cpu").score(images(3), ["a", "a"])
