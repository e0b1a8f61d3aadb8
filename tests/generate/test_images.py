import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from PIL import Image

from hprune.generate.images import LOG, GenerationConfig, Item, generate_images, generate_to_dir, read_records, save_grid
from hprune.toy.pipeline import ArchConfig, build_pipeline
from hprune.toy.prompts import VOCABULARY


class SeedPipe:
    """Stands in for a pipeline: each image is a function of its seed; counts what it draws."""

    def __init__(self):
        self.drawn = []

    def __call__(self, prompts, num_inference_steps, guidance_scale, seeds):
        self.drawn += list(seeds)
        images = np.stack([np.full((8, 8, 3), s % 256, np.uint8) for s in seeds])
        return type("Out", (), {"images": images})


ITEMS = [Item("a red circle", seed=10 * i, scene={"n": i}) for i in range(5)]


def test_config_validation():
    with pytest.raises(HpruneError, match="steps must be at least 1.*batch_size must be at least 1"):
        GenerationConfig(steps=0, batch_size=0)


def test_generate_images_batches_and_offsets_seeds():
    pipe = SeedPipe()
    images = generate_images(pipe, ["p"] * 5, [1, 2, 3, 4, 5], GenerationConfig(seed=100, batch_size=2))
    assert images.shape == (5, 8, 8, 3) and pipe.drawn == [101, 102, 103, 104, 105]
    assert images[:, 0, 0, 0].tolist() == [101, 102, 103, 104, 105]


def test_folder_holds_pngs_and_records(tmp_path):
    records = generate_to_dir(SeedPipe(), ITEMS, tmp_path, GenerationConfig(seed=1, batch_size=2), model="m",
                              progress=False)
    assert [r["seed"] for r in records] == [1, 11, 21, 31, 41]
    assert records[2] == {"index": 2, "prompt": "a red circle", "seed": 21, "path": "00002.png", "scene": {"n": 2}}
    assert all((tmp_path / r["path"]).exists() for r in records)
    assert json.loads((tmp_path / "generation.json").read_text())["model"] == "m"


def test_resume_draws_only_what_is_missing(tmp_path):
    cfg = GenerationConfig(batch_size=2)
    generate_to_dir(SeedPipe(), ITEMS[:3], tmp_path, cfg, progress=False)
    (tmp_path / "00001.png").unlink()  # as if killed before the image landed
    with (tmp_path / LOG).open("a") as f:
        f.write('{"index": 3, "prom')  # a torn last line
    pipe = SeedPipe()
    records = generate_to_dir(pipe, ITEMS, tmp_path, cfg, progress=False)
    assert sorted(pipe.drawn) == [10, 30, 40]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4] and len(read_records(tmp_path)) == 5


def test_resume_with_other_settings_is_refused(tmp_path):
    generate_to_dir(SeedPipe(), ITEMS[:1], tmp_path, GenerationConfig(steps=8), progress=False)
    with pytest.raises(HpruneError, match="other settings"):
        generate_to_dir(SeedPipe(), ITEMS[:1], tmp_path, GenerationConfig(steps=4), progress=False)


def test_real_pipeline_gives_the_same_images_at_any_batch_size(tmp_path):
    torch.manual_seed(0)
    pipe = build_pipeline(ArchConfig(family="sd3", width=32, head_dim=16, num_layers=2, text_width=32), VOCABULARY)
    prompts, seeds = ["a red circle", "two blue squares", "a small green triangle"], [0, 1, 2]
    a = generate_images(pipe, prompts, seeds, GenerationConfig(steps=2, batch_size=3))
    b = generate_images(pipe, prompts, seeds, GenerationConfig(steps=2, batch_size=1))
    assert a.dtype == np.uint8 and a.shape == (3, 64, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_grid_lays_images_out_row_by_row(tmp_path):
    images = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(32)])
    path = save_grid(images, tmp_path / "g" / "grid.png", scale=1)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (4 * 6 + 2, 8 * 6 + 2, 3)
    assert sheet[2, 2, 0] == 0 and sheet[2, 2 + 6, 0] == 1 and sheet[2 + 6, 2, 0] == 8
    with pytest.raises(HpruneError, match="needs 32 images"):
        save_grid(images[:5], tmp_path / "x.png")


def test_settings_hold_the_diffusers_options_only_when_set():
    # folders written before the diffusers options existed still resume
    assert set(GenerationConfig().settings()) == {"steps", "seed", "batch_size", "guidance_scale"}
    cfg = GenerationConfig(size=16, skip_layers=(7, 8), loras=("a.safetensors",))
    assert cfg.settings() == json.loads(json.dumps(cfg.settings()))  # as generation.json reads back
    assert cfg.settings()["skip_layers"] == [7, 8]
    with pytest.raises(HpruneError, match="size must be at least 1"):
        GenerationConfig(size=0)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_diffusers_pipeline_folder_at_any_batch_size_and_resumed(tmp_path, family):
    from hprune.model.testing import tiny_pipeline

    pipe = tiny_pipeline(family)
    items = [Item(p, seed=i) for i, p in enumerate(["a red circle", "the blue square", "a photo of a dog"])]
    cfg = GenerationConfig(steps=2, guidance_scale=0.0, size=16)
    whole = generate_to_dir(pipe, items, tmp_path / "a", replace(cfg, batch_size=3), progress=False)
    generate_to_dir(pipe, items, tmp_path / "b", replace(cfg, batch_size=1), progress=False)
    read = lambda folder: np.stack([np.asarray(Image.open(tmp_path / folder / r["path"])) for r in whole]).astype(int)  # noqa: E731
    first = read("a")
    assert first.shape == (3, 16, 16, 3) and np.abs(first - read("b")).max() <= 1
    assert np.abs(first[0] - first[1]).max() > 8  # different prompts and seeds, different images
    (tmp_path / "a" / "00001.png").unlink()  # as if killed before the image landed
    generate_to_dir(pipe, items, tmp_path / "a", replace(cfg, batch_size=3), progress=False)
    assert np.abs(read("a") - first).max() <= 1 and len(read_records(tmp_path / "a")) == 3
