"""Distillation data sources: the teacher's own samples (data-free) and captioned image folders."""

import json

import pytest
import torch

from hprune.distill.sources import check_caption_folder, folder_data, teacher_data
from hprune.core.errors import HpruneError
from hprune.model.flow import velocity_fn
from hprune.model.testing import tiny_pipeline

PROMPTS = ["a red circle", "a blue square", "two green triangles"]


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_teacher_samples_are_latents_the_transformer_takes(family):
    pipe = tiny_pipeline(family)
    data = teacher_data(pipe, PROMPTS, seed=3, steps=1, size=16, batch_size=2)
    assert len(data) == 3 and data.x0.dim() == 4
    model = pipe.transformer
    with torch.no_grad():
        v = velocity_fn(model)(model, data.x0[:2], torch.full((2,), 0.5), data.seq[:2], data.pooled[:2])
    assert v.shape == data.x0[:2].shape


def test_teacher_samples_do_not_depend_on_the_batch_size():
    pipe = tiny_pipeline("sd3")
    a = teacher_data(pipe, PROMPTS, seed=3, steps=1, size=16, batch_size=1)
    b = teacher_data(pipe, PROMPTS, seed=3, steps=1, size=16, batch_size=3)
    torch.testing.assert_close(a.x0, b.x0)
    assert not torch.equal(a.x0[0], a.x0[1])


def _images(folder, n=2):
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(folder / f"{i}.png")
    return folder


def test_an_imagefolder_with_metadata_jsonl_is_read_with_datasets(tmp_path):
    folder = _images(tmp_path / "imgs")
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "text": PROMPTS[i]}) + "\n"
                                                   for i in range(2)))
    check_caption_folder(folder)
    data = folder_data(tiny_pipeline("sd3"), folder, size=16)
    assert len(data) == 2


def test_images_without_captions_are_refused_naming_both_conventions(tmp_path):
    folder = _images(tmp_path / "imgs")
    with pytest.raises(HpruneError, match="metadata.jsonl"):
        check_caption_folder(folder)
    with pytest.raises(HpruneError, match="not a folder"):
        check_caption_folder(tmp_path / "nowhere")


def test_cached_data_is_made_once_per_key_and_read_back_from_its_file(tmp_path):
    import hashlib

    from hprune.distill.data import DistillData
    from hprune.distill.sources import DATA_FILE, cached_data

    made = []

    def make(n=2):
        made.append(n)
        return DistillData(torch.randn(n, 4, 8, 8), torch.randn(n, 3, 32), torch.randn(n, 32))

    first = cached_data(tmp_path / "run", ("shapes:2", 64, 0), make)
    again = cached_data(tmp_path / "run", ("shapes:2", 64, 0), lambda: pytest.fail("the cache was not reused"))
    assert made == [2] and torch.equal(first.x0, again.x0)
    other = cached_data(tmp_path / "run", ("shapes:2", 64, 1), lambda: make(3))  # another seed: another file
    assert len(other) == 3
    key = hashlib.sha256(repr(("shapes:2", 64, 0)).encode()).hexdigest()[:12]  # the name `hprune distill` always gave
    assert (tmp_path / "run" / DATA_FILE.format(key=key)).is_file()
    assert len(list((tmp_path / "run").glob("distill_data-*.safetensors"))) == 2


def test_folder_data_is_encoded_at_the_t5_length_images_are_sampled_with(tmp_path):
    """One max-length rule (issue 15): training embeddings as long as the sampler's, so a FLUX
    student never trains on 256 tokens and draws with 512."""
    from hprune.model.sampling import PromptSeed, SamplingConfig, make_sampler, max_sequence_length

    pipe = tiny_pipeline("flux")
    pipe.tokenizer_2.model_max_length = 300  # above SD3's 256, below FLUX's 512
    folder = _images(tmp_path / "imgs")
    for i in range(2):
        (folder / f"{i}.txt").write_text(PROMPTS[i])
    data = folder_data(pipe, folder, size=16)
    sampler = make_sampler(pipe, SamplingConfig(steps=1, size=16), [PromptSeed(PROMPTS[0], 0)])
    assert data.seq.shape[1] == max_sequence_length(pipe) == 300
    assert sampler.encode(PROMPTS[:1])["prompt_embeds"].shape[1] == 300
