import json

import pytest
import torch

from hprune.cli import main
from hprune.commands.generate import file_items, split_items
from hprune.errors import HpruneError
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
