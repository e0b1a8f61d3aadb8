import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusion3Pipeline
from PIL import Image

# the tiny pruned folders and LoRAs of the original-index tests (tests/model)
from model.test_original_indices import _folders, _lora, _sd3_10_blocks
from hprune.cli import main
from hprune.commands.generate import file_items, split_items, text_items
from hprune.core.errors import HpruneError
from hprune.generate.images import Item
from hprune.prune.surgery import removed
from hprune.model.testing import tiny_generate, tiny_pipeline
from hprune.toy.pipeline import ArchConfig, build_pipeline
from hprune.toy.prompts import VOCABULARY
from hprune.toy.world import CATEGORIES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    arch = ArchConfig(family="flux", width=32, head_dim=16, num_layers=1, num_single_layers=1, text_width=32)
    build_pipeline(arch, VOCABULARY).save_pretrained(path)
    return path


def test_split_items_interleave_categories_with_fixed_seeds():
    items = split_items("test")
    first = [item.scene["category"] for item in items[: len(CATEGORIES)]]
    assert sorted(first) == sorted(CATEGORIES)
    assert split_items("test") == items and len({(i.prompt, i.seed) for i in items}) == len(items)


def test_prompt_files_txt_and_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("two red circles\n\na blue square left of a yellow triangle\n")
    items = file_items(tmp_path / "p.txt")
    assert [(i.prompt, i.seed, i.scene["category"]) for i in items] == [
        ("two red circles", 0, "counting"), ("a blue square left of a yellow triangle", 1, "position")]
    (tmp_path / "p.jsonl").write_text(json.dumps(items[1].scene) + "\n" + json.dumps({"prompt": "a red circle"}) + "\n")
    assert [i.prompt for i in file_items(tmp_path / "p.jsonl")] == [items[1].prompt, "a red circle"]
    (tmp_path / "bad.jsonl").write_text('{"text": 1}\n')
    with pytest.raises(HpruneError, match="line 1"):
        file_items(tmp_path / "bad.jsonl")


def test_prompt_files_for_diffusers_pipelines_take_any_text(tmp_path):
    (tmp_path / "p.txt").write_text("a magenta sunset over the sea\n\na watercolor fox\n")
    assert text_items(tmp_path / "p.txt") == [Item("a magenta sunset over the sea", 0), Item("a watercolor fox", 1)]
    (tmp_path / "p.jsonl").write_text('{"prompt": "a fox", "seed": 7}\n{"prompt": "a cat"}\n')
    assert text_items(tmp_path / "p.jsonl") == [Item("a fox", 7), Item("a cat", 1)]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a fox", "seed": "x"}\n')
    with pytest.raises(HpruneError, match="bad.jsonl line 1"):
        text_items(tmp_path / "bad.jsonl")


def test_generate_split_writes_images_and_log(model_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["generate", "--model", str(model_dir), "--split", "val", "--limit", "3", "--steps", "2", "--out", str(out),
            "--device", "cpu"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all((out / r["path"]).exists() for r in records)
    assert {"prompt", "seed", "path", "scene"} <= set(records[0])
    assert "3 images" in capsys.readouterr().out
    assert main(args) == 0  # resuming a finished folder draws nothing and keeps the log
    assert len((out / "generations.jsonl").read_text().splitlines()) == 3


def test_unknown_word_fails_with_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a magenta circle\n")
    assert main(["generate", "--model", str(model_dir), "--prompts", str(tmp_path / "p.txt"), "--out",
                 str(tmp_path / "g")]) == 1
    assert "unknown word 'magenta'" in capsys.readouterr().err


def test_missing_model_fails_with_one_line(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "none"), "--split", "val", "--out", str(tmp_path / "g")]) == 1
    assert "neither shapes-sd3 nor shapes-flux" in capsys.readouterr().err


# diffusers SD3/FLUX pipeline folders (issue #16): expected images come from the pipeline's own call,
# on the unpruned model with the same blocks removed reversibly (hprune.prune.surgery.removed)

UNITS = ["joint.0"]  # the pruned folder lost block 0: original blocks 7, 8, 9 are now 6, 7, 8
PROMPTS = ["a red circle", "the blue square left of a green triangle", "a photo of a cat"]


def _sd3_strong_blocks():
    """The 10-block tiny SD3 with its blocks' outputs scaled up: random tiny blocks barely move the
    image, and what skip-layer guidance does with them would be lost in the PNGs' rounding."""
    pipe = _sd3_10_blocks()
    with torch.no_grad():
        for name, weight in pipe.transformer.transformer_blocks.named_parameters():
            if name.endswith(("to_out.0.weight", "to_add_out.weight", "ff.net.2.weight", "ff_context.net.2.weight")):
                weight.mul_(10)
    return pipe


@pytest.fixture(scope="module")
def sd3_folders(tmp_path_factory):
    """A folder with `pipe` (tiny SD3, 10 blocks), `pruned` (it without joint.0) and `p.txt`."""
    path = tmp_path_factory.mktemp("sd3")
    _folders(path, _sd3_strong_blocks, UNITS)
    (path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    return path


def _original(folders):
    pipe = DiffusionPipeline.from_pretrained(folders / "pipe")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(folders, out, *options, model="pruned"):
    args = ["generate", "--model", str(folders / model), "--prompts", str(folders / "p.txt"), "--out", str(out),
            "--size", "16", "--device", "cpu", *options]
    assert main(args) == 0
    return np.stack([np.asarray(Image.open(out / f"{i:05d}.png")) for i in range(len(PROMPTS))]).astype(int)


def _expected(pipe, **call):
    """The images `hprune generate` should write: image i from seed i, the pipeline called directly."""
    images = [tiny_generate(pipe, prompt, seed=i, **call) for i, prompt in enumerate(PROMPTS)]
    return (np.clip(np.stack(images), 0, 1) * 255).round().astype(int)


def test_generate_on_a_diffusers_pipeline_folder(sd3_folders, tmp_path, capsys):
    images = _generate(sd3_folders, tmp_path / "gen", "--steps", "2", "--batch-size", "2", model="pipe")
    assert images.shape == (3, 16, 16, 3)
    assert np.abs(images - _expected(_original(sd3_folders), steps=2)).max() <= 1
    records = [json.loads(line) for line in (tmp_path / "gen" / "generations.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["seed"]) for r in records] == [(p, i) for i, p in enumerate(PROMPTS)]
    assert json.loads((tmp_path / "gen" / "generation.json").read_text())["size"] == 16
    assert "3 images" in capsys.readouterr().out
    # image i depends on its seed only: one image per call gives the same folder
    assert np.abs(_generate(sd3_folders, tmp_path / "one", "--steps", "2", "--batch-size", "1", model="pipe") - images).max() <= 1


def test_generate_on_a_pruned_folder_with_the_default_steps(sd3_folders, tmp_path):
    images = _generate(sd3_folders, tmp_path / "gen")
    assert json.loads((tmp_path / "gen" / "generation.json").read_text())["steps"] == 4  # the few-step default
    original = _original(sd3_folders)
    with removed(original.transformer, UNITS):
        expected = _expected(original, steps=4)
    assert np.abs(expected - _expected(original, steps=4)).max() > 4  # the pruning shows in the images
    assert np.abs(images - expected).max() <= 1


def test_skip_layers_name_blocks_of_the_original_model(sd3_folders, tmp_path):
    guided = dict(guidance_scale=2.0, steps=6)
    images = _generate(sd3_folders, tmp_path / "gen", "--skip-layers", "7,8,9", "--guidance", "2", "--steps", "6")
    original = _original(sd3_folders)
    with removed(original.transformer, UNITS):
        expected = _expected(original, skip_guidance_layers=[7, 8, 9], **guided)
        unguided = _expected(original, **guided)
        untranslated = _expected(original, skip_guidance_layers=[8, 9], **guided)  # [7, 8, 9] on the new numbering
    assert np.abs(expected - unguided).max() > 4 and np.abs(expected - untranslated).max() > 4
    assert np.abs(images - expected).max() <= 1
    assert json.loads((tmp_path / "gen" / "generation.json").read_text())["skip_layers"] == [7, 8, 9]


def test_lora_made_for_the_original_model(sd3_folders, tmp_path):
    original = _original(sd3_folders)
    lora = _lora(original.transformer, ("attn.to_q", "ff.net.2"))
    StableDiffusion3Pipeline.save_lora_weights(tmp_path / "lora", {k.removeprefix("transformer."): v for k, v in lora.items()})
    file = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    images = _generate(sd3_folders, tmp_path / "gen", "--lora", str(file))
    with removed(original.transformer, UNITS):
        without = _expected(original, steps=4)
        original.load_lora_weights(lora)
        expected = _expected(original, steps=4)
    assert np.abs(expected - without).max() > 4  # the LoRA changes the images
    assert np.abs(images - expected).max() <= 1


def _flux_folder(path):
    if not (path / "model_index.json").exists():
        tiny_pipeline("flux").save_pretrained(path)
    return path


def _bad_lora(path):
    path.write_bytes(b"not a safetensors file")
    return path


BAD = {
    "split": (lambda d: ["--split", "val"], "--split draws the shapes testbed's prompts"),
    "flux skip-layers": (lambda d: ["--model", str(_flux_folder(d / "flux")), "--skip-layers", "1", "--guidance", "2",
                                    "--steps", "6"], "FLUX pipelines have no skip-layer guidance"),
    "skip-layers without guidance": (lambda d: ["--skip-layers", "7"], "pass --guidance above 1"),
    "skip-layers with too few steps": (lambda d: ["--skip-layers", "7", "--guidance", "2"], "pass --steps 6 or more"),
    "skip-layers past the original": (lambda d: ["--skip-layers", "10", "--guidance", "2", "--steps", "6"],
                                      "does not have block joint.10"),
    "skip-layers not numbers": (lambda d: ["--skip-layers", "seven"], "takes block indices separated by commas"),
    "missing lora": (lambda d: ["--lora", str(d / "none.safetensors")], "none.safetensors does not exist"),
    "not a lora": (lambda d: ["--lora", str(_bad_lora(d / "bad.safetensors"))], "could not load the LoRA"),
    "size": (lambda d: ["--size", "15"], "must be a multiple of 2"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_options_on_a_diffusers_pipeline_fail_with_one_line(sd3_folders, tmp_path, capsys, case):
    options, message = BAD[case]
    options = options(tmp_path)
    source = [] if "--split" in options else ["--prompts", str(sd3_folders / "p.txt")]
    args = ["generate", "--model", str(sd3_folders / "pruned"), *source, "--out", str(tmp_path / "g"), "--device", "cpu"]
    assert main(args + options) == 1  # (a later --model overrides the first)
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error:")


def test_diffusers_options_on_a_shapes_teacher_fail_with_one_line(model_dir, tmp_path, capsys):
    args = ["generate", "--model", str(model_dir), "--split", "val", "--out", str(tmp_path / "g"), "--size", "32",
            "--lora", str(tmp_path / "x.safetensors")]
    assert main(args) == 1
    assert "--size, --lora apply to diffusers SD3/FLUX pipelines only" in capsys.readouterr().err


def test_cuda_graph_on_cpu_is_refused_before_anything_loads(model_dir, tmp_path, capsys):
    args = ["generate", "--model", str(model_dir), "--split", "val", "--limit", "1", "--steps", "2",
            "--out", str(tmp_path / "g"), "--device", "cpu", "--cuda-graph"]
    assert main(args) == 1
    assert "--cuda-graph needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_a_grid_of_too_few_images_is_refused_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a red circle\n\na blue square\n")
    for source in (["--split", "test", "--limit", "3"], ["--prompts", str(tmp_path / "p.txt")]):
        args = ["generate", "--model", str(tmp_path / "no-such-model"), *source, "--steps", "1",
                "--device", "cpu", "--out", str(tmp_path / "gen"), "--grid", str(tmp_path / "grid.png")]
        assert main(args) == 1
        drawn = 3 if "--split" in source else 2
        assert f"--grid lays out 32 images and this run draws {drawn};" in capsys.readouterr().err
    assert not (tmp_path / "gen").exists() and not (tmp_path / "grid.png").exists()
