import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.model.sampling import PromptSeed, SamplingConfig, make_sampler
from hprune.model.testing import tiny_pipeline

PROMPTS = ["a red circle", "a blue square", "the green triangle"]


def test_a_pipeline_it_cannot_draw_with_is_named():
    with pytest.raises(HpruneError, match="cannot draw images with a Linear; pass a shapes teacher"):
        make_sampler(torch.nn.Linear(2, 2), SamplingConfig(), [PromptSeed("a red circle", 0)])


def test_diffusers_images_equal_a_plain_pipeline_call_and_steps_are_reported():
    pipe = tiny_pipeline("sd3")
    items = [PromptSeed(p, i) for i, p in enumerate(PROMPTS)]
    shares = []
    sampler = make_sampler(pipe, SamplingConfig(steps=2, size=16, max_sequence_length=16, batch_size=2), items)
    images = sampler.images(on_step=shares.append)
    for i, it in enumerate(items):
        out = pipe(it.prompt, num_inference_steps=2, guidance_scale=0.0, height=16, width=16, output_type="np",
                   max_sequence_length=16, generator=torch.Generator().manual_seed(it.seed)).images
        np.testing.assert_array_equal(images[i], (np.clip(out[0], 0, 1) * 255).round().astype(np.uint8))
    assert len(shares) == 2 * 2 and sum(shares) == pytest.approx(1.0)  # 2 batches x 2 steps


def test_shapes_images_equal_one_pipeline_call_at_any_batch_size():
    from hprune.toy.pipeline import ArchConfig, build_pipeline
    from hprune.toy.prompts import VOCABULARY
    from hprune.toy.splits import prompts_by_category

    torch.manual_seed(0)
    pipe = build_pipeline(ArchConfig("sd3", width=32, head_dim=16, num_layers=2, image_size=16, patch_size=4,
                                     text_width=32, text_layers=1, guidance_scale=2.0), VOCABULARY)
    items = [PromptSeed(group[0], 7 + i) for i, group in enumerate(list(prompts_by_category("val").values())[:3])]
    shares = []
    images = make_sampler(pipe, SamplingConfig(steps=3, batch_size=2), items).images(on_step=shares.append)
    expected = pipe([it.prompt for it in items], num_inference_steps=3, seeds=[it.seed for it in items]).images
    np.testing.assert_array_equal(images, expected)
    assert len(shares) == 2 * 3 and sum(shares) == pytest.approx(1.0)
