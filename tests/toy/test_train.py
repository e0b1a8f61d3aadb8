import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hprune.core.errors import HpruneError
from hprune.toy.pipeline import build_pipeline, load_pipeline, to_model_space
from hprune.toy.prompts import VOCABULARY
from hprune.toy.splits import sample_training_batch
from hprune.toy.train import SWEEP_GUIDANCE, SWEEP_SHIFT, TEACHERS, TrainConfig, flow_loss, lr_at, main, parse_args, train

TINY = {"width": 32, "head_dim": 16, "num_layers": 2, "text_width": 32, "max_length": 16}


def tiny_arch(family):
    return replace(TEACHERS[family], **TINY, num_single_layers=1 if family == "flux" else 0)


def test_config_validation_names_the_fields():
    with pytest.raises(HpruneError, match="--family must be one of"):
        TrainConfig(family="sdxl", out="x")
    with pytest.raises(HpruneError, match="steps must be positive; batch_size must be positive.*cond_dropout"):
        TrainConfig(family="sd3", out="x", steps=0, batch_size=0, cond_dropout=1.5)


def test_shipped_teacher_sizes_follow_the_issue():
    assert TEACHERS["sd3"].num_layers >= 16
    assert TEACHERS["flux"].num_layers >= 1 and TEACHERS["flux"].num_single_layers >= 1


def test_warmup_then_constant_lr():
    cfg = TrainConfig(family="sd3", out="x", lr=1e-3, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == lr_at(500, cfg) == pytest.approx(1e-3)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_flow_loss_falls_when_fitting_one_batch(family):
    # The method beats doing nothing: a few Adam steps on one batch cut the loss.
    torch.manual_seed(0)
    pipe = build_pipeline(tiny_arch(family), VOCABULARY)
    prompts, images, _ = sample_training_batch(np.random.default_rng(0), 4)
    x, ids = to_model_space(images), pipe.text_encoder.tokenize(prompts)
    params = [*pipe.transformer.parameters(), *pipe.text_encoder.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)

    def loss():
        torch.manual_seed(1)  # same noise and noise levels each time
        return flow_loss(pipe, x, ids)

    first = loss().item()
    for _ in range(8):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.8 * first


def test_train_writes_a_loadable_pipeline(tmp_path):
    cfg = TrainConfig(family="flux", out=str(tmp_path), arch=tiny_arch("flux"), steps=3, batch_size=4, warmup=1,
                      eval_per_category=0, workers=0, device="cpu")
    summary = train(cfg, command="python -m hprune.toy.train --family flux")
    assert summary["steps_done"] == 3
    pipe = load_pipeline(tmp_path / "pipeline")
    assert pipe.transformer.config.num_single_layers == 1
    record = json.loads((tmp_path / "pipeline" / "training.json").read_text())
    assert record["command"].startswith("python -m hprune.toy.train") and record["config"]["steps"] == 3
    assert "init_from" not in record
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["config"]["family"] == "flux" and "done" in log[-1]


def test_training_and_the_choice_of_sampling_defaults_never_read_the_test_split(tmp_path, seal_test_split):
    cfg = TrainConfig(family="sd3", out=str(tmp_path), arch=tiny_arch("sd3"), steps=1, batch_size=2, warmup=1,
                      eval_per_category=1, sample_steps=2, workers=0, device="cpu")
    assert cfg.sweep
    # the split files' bytes are hashed into training.json (a fingerprint, not a use): only
    # reading the test prompts through hprune.toy.splits is sealed here
    with seal_test_split(prompts_file=False):
        summary = train(cfg)
    assert (summary["val"]["guidance_scale"], summary["val"]["shift"]) in [(g, s) for g in SWEEP_GUIDANCE
                                                                          for s in SWEEP_SHIFT]


def test_cli_parses_arch_overrides():
    cfg = parse_args(["--family", "sd3", "--out", "o", "--steps", "7", "--arch", '{"width": 64, "head_dim": 32}',
                      "--no-compile", "--no-sweep"])
    assert (cfg.steps, cfg.arch.width, cfg.arch.num_layers, cfg.compile, cfg.sweep) == (7, 64, 16, False, False)


def test_cli_reports_a_bad_setting(capsys):
    assert main(["--family", "sd3", "--out", "o", "--steps", "0"]) == 1
    assert "steps must be positive" in capsys.readouterr().err


def test_second_stage_starts_from_saved_weights(tmp_path):
    first = TrainConfig(family="sd3", out=str(tmp_path / "a"), arch=tiny_arch("sd3"), steps=1, batch_size=2,
                        warmup=1, eval_per_category=0, workers=0, device="cpu")
    train(first)
    second = replace(first, out=str(tmp_path / "b"), init=str(tmp_path / "a" / "pipeline"), lr=0.0)
    train(second)
    a, b = load_pipeline(tmp_path / "a" / "pipeline"), load_pipeline(tmp_path / "b" / "pipeline")
    record = json.loads((tmp_path / "b" / "pipeline" / "training.json").read_text())
    assert record["init_from"]["config"]["out"] == str(tmp_path / "a")
    for x, y in zip(a.transformer.parameters(), b.transformer.parameters()):
        torch.testing.assert_close(x, y)


def test_snapshot_every_eval_is_a_loadable_teacher(tmp_path):
    cfg = TrainConfig(family="sd3", out=str(tmp_path), arch=tiny_arch("sd3"), steps=4, batch_size=2, warmup=1,
                      eval_every=2, eval_per_category=0, workers=0, device="cpu")
    train(cfg)
    record = json.loads((tmp_path / "snapshot" / "training.json").read_text())
    assert record["snapshot"] and record["steps_done"] == 4
    snap, final = load_pipeline(tmp_path / "snapshot"), load_pipeline(tmp_path / "pipeline")
    for x, y in zip(snap.transformer.parameters(), final.transformer.parameters()):
        torch.testing.assert_close(x, y)
    assert not (tmp_path / "snapshot.tmp").exists()
