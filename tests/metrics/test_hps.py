import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.metrics import get_metric
from test_clip import images, save_tiny_clip


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    folder = save_tiny_clip(tmp_path_factory.mktemp("hps") / "tiny-reward", seed=1)
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(folder)
    with torch.no_grad():
        model.logit_scale.fill_(np.log(50.0))  # distinct from HPS's fixed 100
    model.save_pretrained(folder)
    return folder


def test_hps_is_100_times_cosine_and_pickscore_uses_logit_scale(reward_dir):
    prompts = ["a red circle", "two blue squares"]
    hps = get_metric(f"hps:{reward_dir}", device="cpu")
    pick = get_metric(f"pickscore:{reward_dir}", device="cpu")
    cos = hps.encoder.cosine(images(2), prompts)
    np.testing.assert_allclose(hps.score(images(2), prompts)["hps"], 100 * cos, rtol=1e-6)
    np.testing.assert_allclose(pick.score(images(2), prompts)["pickscore"], 50 * cos, rtol=1e-4)
    assert hps.primary == hps.alignment == "hps" and pick.components == ("pickscore",)


def test_hps_differs_from_clip_with_other_weights(reward_dir, tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip", seed=0)
    prompts = ["a red circle", "two blue squares"]
    a = get_metric(f"hps:{reward_dir}", device="cpu").score(images(2), prompts)["hps"]
    b = get_metric(f"clip:{clip_dir}", device="cpu").score(images(2), prompts)["clip"]
    assert not np.allclose(a, b)


def test_missing_weights_say_which_metric(tmp_path):
    with pytest.raises(HpruneError, match=r"hps weights folder .* does not exist; pass --metric hps:"):
        get_metric(f"hps:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HpruneError, match="not a usable CLIP model folder"):
        get_metric(f"pickscore:{tmp_path / 'empty'}")
