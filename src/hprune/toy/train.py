"""Train a shapes teacher with rectified flow: `python -m hprune.toy.train --family sd3|flux --out DIR`.

The transformer and its text encoder train jointly on images rendered on the
fly from the world's training stream (DataLoader workers render whole
batches, so the GPU is not starved). Timesteps are logit-normal as in SD3;
10% of prompts are dropped to the empty prompt so the teacher can also be
sampled with classifier-free guidance. An EMA of the weights is what gets
evaluated and saved. Evaluation uses the *val* split only; at the end a small
sweep over guidance scale and scheduler shift, again on val, picks the
sampling defaults written into the pipeline folder.

Writes DIR/pipeline (the diffusers folder, bf16), DIR/train_log.jsonl and
DIR/pipeline/training.json (config, versions, command, wall time, val scores).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hprune.core.cuda import avoid_cudnn_attention
from hprune.core.errors import HpruneError
from hprune.toy.pipeline import ArchConfig, ShapesPipeline, build_pipeline, load_pipeline, to_model_space

# The shipped teachers. Widths are set by the size budget (< 20 MB each in
# bf16) and by CPU sampling speed (64 images x 8 steps in < 60 s on 2 cores).
TEACHERS = {
    "sd3": ArchConfig(family="sd3", width=112, head_dim=28, num_layers=16),
    "flux": ArchConfig(family="flux", width=128, head_dim=32, num_layers=6, num_single_layers=12),
}
SWEEP_GUIDANCE = (1.0, 2.5)
SWEEP_SHIFT = (1.0, 2.0)


@dataclass
class TrainConfig:
    """Everything one teacher training run depends on."""

    family: str
    out: str
    arch: ArchConfig | None = None  # None: the shipped teacher's sizes
    steps: int = 6000
    batch_size: int = 256
    lr: float = 6e-4
    warmup: int = 300
    ema_decay: float = 0.999
    cond_dropout: float = 0.1
    seed: int = 0
    eval_every: int = 1000
    eval_per_category: int = 32
    sample_steps: int = 8
    workers: int = 6
    compile: bool = True
    sweep: bool = True
    max_minutes: float = 1e9  # stop training early (the sweep and save still run)
    init: str | None = None  # continue from the weights of a saved teacher folder (fresh optimizer)
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")

    def __post_init__(self):
        if self.family not in TEACHERS:
            raise HpruneError(f"--family must be one of {sorted(TEACHERS)}, got {self.family!r}.")
        self.arch = self.arch or TEACHERS[self.family]
        problems = [f"{name} must be positive" for name in ("steps", "batch_size", "sample_steps", "warmup")
                    if getattr(self, name) < 1]
        if self.eval_per_category < 0:
            problems.append("eval_per_category must be >= 0 (0 skips evaluation)")
        if not 0 <= self.cond_dropout < 1:
            problems.append("cond_dropout must be in [0, 1)")
        if problems:
            raise HpruneError("; ".join(problems) + ".")


class RenderedBatches(IterableDataset):
    """Endless (uint8 images, prompts) batches of training prompts; one seeded stream per worker."""

    def __init__(self, seed: int, batch_size: int):
        self.seed, self.batch_size = seed, batch_size

    def __iter__(self):
        from hprune.toy.splits import sample_training_batch

        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            prompts, images, _ = sample_training_batch(rng, self.batch_size, "train")
            yield torch.from_numpy(images), list(prompts)


def batches(cfg: TrainConfig):
    data = RenderedBatches(cfg.seed, cfg.batch_size)
    extra = {"prefetch_factor": 4, "persistent_workers": True} if cfg.workers else {}
    return iter(DataLoader(data, batch_size=None, num_workers=cfg.workers, pin_memory=cfg.device == "cuda", **extra))


def flow_loss(pipe: ShapesPipeline, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rectified-flow velocity MSE at logit-normal noise levels (SD3's choice)."""
    noise = torch.randn_like(images)
    sigma = torch.sigmoid(torch.randn(images.shape[0], device=images.device))
    s = sigma.view(-1, 1, 1, 1)
    noisy = (1 - s) * images + s * noise
    seq, pooled = pipe.text_encoder(ids)
    velocity = pipe.velocity(noisy, sigma, seq, pooled)
    return F.mse_loss(velocity.float(), noise - images)


def drop_prompts(prompts: list[str], p: float, rng: np.random.Generator) -> list[str]:
    return ["" if rng.random() < p else prompt for prompt in prompts]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then constant: the EMA does the annealing, and a run cut
    short by --max-minutes equals a run of that many --steps."""
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup)


@torch.no_grad()
def ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    torch._foreach_lerp_(ema, params, 1 - decay)


def trainable(pipe: ShapesPipeline) -> list[torch.nn.Parameter]:
    return [*pipe.transformer.parameters(), *pipe.text_encoder.parameters()]


def sample_val(pipe: ShapesPipeline, items, cfg: TrainConfig, guidance: float, shift: float) -> np.ndarray:
    """Samples of the val items, each from its own seed."""
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, shift=shift)
    out = []
    for start in range(0, len(items), 256):
        chunk = items[start : start + 256]
        out.append(pipe([item.prompt for item in chunk], num_inference_steps=cfg.sample_steps,
                        guidance_scale=guidance, seeds=[item.seed for item in chunk]).images)
    return np.concatenate(out)


def evaluate_val(pipe, val: "ValSet", cfg: TrainConfig, guidance: float, shift: float) -> dict:
    from hprune.toy.shapes_eval import evaluate

    report = evaluate(sample_val(pipe, val.items, cfg, guidance, shift), [item.prompt for item in val.items])
    return {"guidance_scale": guidance, "shift": shift, "semantic": report.semantic, "quality": report.quality,
            "quality_ratio": report.quality / val.render_quality,
            "per_category": {k: v["semantic"] if isinstance(v, dict) else v for k, v in report.per_category.items()}}


def sweep_defaults(pipe, val: "ValSet", cfg: TrainConfig, log) -> dict:
    """Pick guidance scale and shift on val: best semantic + quality ratio."""
    grid = itertools.product(SWEEP_GUIDANCE, SWEEP_SHIFT) if cfg.sweep else [(cfg.arch.guidance_scale, cfg.arch.shift)]
    results = []
    for guidance, shift in grid:
        results.append(evaluate_val(pipe, val, cfg, guidance, shift))
        log({"sweep": results[-1]})
    return max(results, key=lambda r: r["semantic"] + min(1.0, r["quality_ratio"]))


def set_defaults(pipe: ShapesPipeline, guidance: float, shift: float) -> None:
    pipe.register_to_config(guidance_scale=guidance)
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, shift=shift)


def make_logger(path: Path):
    def log(record: dict) -> None:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    return log


def setup(cfg: TrainConfig):
    """Seeded model, its EMA twin and the optimizer."""
    from hprune.toy.prompts import VOCABULARY

    torch.manual_seed(cfg.seed)
    if cfg.init:
        pipe = load_pipeline(cfg.init, device=cfg.device)
    else:
        pipe = build_pipeline(cfg.arch, VOCABULARY).to(cfg.device)
    ema = copy.deepcopy(pipe)
    ema.set_progress_bar_config(disable=True)
    optimizer = torch.optim.AdamW(trainable(pipe), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0,
                                  fused=cfg.device == "cuda")
    return pipe, ema, optimizer


class ValSet:
    """The val items and the quality of exact renders of them (the quality bar is relative to it)."""

    def __init__(self, per_category: int):
        from hprune.toy.shapes_eval import evaluate
        from hprune.toy.prompts import parse
        from hprune.toy.render import render_scene
        from hprune.toy.splits import eval_set

        self.items = eval_set("val", per_category=per_category)
        scenes = [parse(item.prompt) for item in self.items]
        renders = np.stack([render_scene(scene, item.seed) for scene, item in zip(scenes, self.items)])
        self.render_quality = evaluate(renders, scenes).quality


def compile_blocks(transformer) -> None:
    """Regional torch.compile: each transformer block, not the whole model. The blocks
    share code, so compiling is fast (whole-model compile took ~2.5 min for SD3 on an
    H100 and crashed FLUX's backward with an illegal memory access on torch 2.11)."""
    for name in ("transformer_blocks", "single_transformer_blocks"):
        for block in getattr(transformer, name, []):
            block.compile()


def uncompile_blocks(transformer) -> None:
    for name in ("transformer_blocks", "single_transformer_blocks"):
        for block in getattr(transformer, name, []):
            block._compiled_call_impl = None


def train_step(pipe, optimizer, images, ids, cfg: TrainConfig, step: int) -> torch.Tensor:
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    with torch.autocast(device_type=cfg.device, dtype=torch.bfloat16, enabled=cfg.device == "cuda"):
        loss = flow_loss(pipe, images, ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable(pipe), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def train(cfg: TrainConfig, command: str = "") -> dict:
    """Train, pick sampling defaults on val, save DIR/pipeline; returns the run's summary."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = make_logger(out / "train_log.jsonl")
    start = time.time()
    avoid_cudnn_attention()
    pipe, ema, optimizer = setup(cfg)
    val = ValSet(cfg.eval_per_category) if cfg.eval_per_category else None
    log({"config": _jsonable(cfg), "params": sum(p.numel() for p in trainable(pipe)),
         "render_quality": val and val.render_quality})
    if cfg.compile and cfg.device == "cuda":
        compile_blocks(pipe.transformer)
    params, ema_params = trainable(pipe), trainable(ema)
    rng = np.random.default_rng(cfg.seed)
    data, waited, step = batches(cfg), 0.0, 0
    while step < cfg.steps and time.time() - start < 60 * cfg.max_minutes:
        tick = time.time()
        images, prompts = next(data)
        waited += time.time() - tick
        ids = pipe.text_encoder.tokenize(drop_prompts(prompts, cfg.cond_dropout, rng)).to(cfg.device, non_blocking=True)
        images = to_model_space(images.to(cfg.device, non_blocking=True))
        try:
            loss = train_step(pipe, optimizer, images, ids, cfg, step)
        except Exception as err:  # a compiler failure on the first step: carry on uncompiled
            if step or not cfg.compile:
                raise
            log({"compile_failed": repr(err)[:500]})
            uncompile_blocks(pipe.transformer)
            optimizer.zero_grad(set_to_none=True)
            loss = train_step(pipe, optimizer, images, ids, cfg, step)
        ema_update(ema_params, params, cfg.ema_decay if step >= cfg.warmup else 0.0)
        step += 1
        if step % 100 == 0:
            log({"step": step, "loss": loss.item(), "elapsed_s": round(time.time() - start, 1),
                 "data_wait_s": round(waited, 1)})
        if step % cfg.eval_every == 0:
            if val:
                log({"step": step, "val": evaluate_val(ema, val, cfg, cfg.arch.guidance_scale, cfg.arch.shift)})
            snapshot(ema, out / "snapshot", cfg, step, command)
    summary = {"steps_done": step, "train_wall_s": round(time.time() - start, 1)}
    if val:
        best = sweep_defaults(ema, val, cfg, log)
        set_defaults(ema, best["guidance_scale"], best["shift"])
        summary.update(val=best, render_quality=val.render_quality)
    summary["total_wall_s"] = round(time.time() - start, 1)
    save(ema, out / "pipeline", cfg, summary, command)
    log({"done": summary})
    return summary


def save(pipe: ShapesPipeline, folder: Path, cfg: TrainConfig, summary: dict, command: str) -> None:
    """The diffusers folder in bf16, with what produced it beside the weights."""
    import diffusers

    pipe.to("cpu", torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    record = {"command": command, "config": _jsonable(cfg),
              "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
              "split_files_sha256": split_hashes(), **summary}
    if cfg.init:  # a later stage: keep the record of the stages before it
        from hprune.toy.pipeline import resolve

        earlier = resolve(cfg.init) / "training.json"
        record["init_from"] = json.loads(earlier.read_text()) if earlier.exists() else str(cfg.init)
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def snapshot(ema: ShapesPipeline, folder: Path, cfg: TrainConfig, step: int, command: str) -> None:
    """The EMA so far as a loadable teacher folder, replaced atomically: a run on a machine
    that can be taken away leaves a usable `--init` for the next stage."""
    from hprune.core.atomic import atomic_folder

    with atomic_folder(folder, overwrite=True) as tmp:
        save(copy.deepcopy(ema), tmp, cfg, {"steps_done": step, "snapshot": True}, command)


def split_hashes() -> dict[str, str]:
    """Fingerprints of the prompt splits trained on, so a later change of the splits is visible."""
    from hprune.toy.splits import DATA

    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in sorted(DATA.glob("*.txt"))}


def _jsonable(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m hprune.toy.train", description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=sorted(TEACHERS))
    parser.add_argument("--out", required=True, help="output folder (pipeline/, train_log.jsonl)")
    defaults = TrainConfig(family="sd3", out="")
    for name in ("steps", "batch_size", "lr", "warmup", "ema_decay", "cond_dropout", "seed", "eval_every",
                 "eval_per_category", "workers", "max_minutes"):
        parser.add_argument("--" + name.replace("_", "-"), type=type(getattr(defaults, name)),
                            default=getattr(defaults, name))
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile of the transformer blocks")
    parser.add_argument("--no-sweep", action="store_true", help="keep guidance 1 and shift 1 instead of tuning on val")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--init", default=None, help="start from the weights of this teacher folder (a second stage)")
    parser.add_argument("--arch", type=json.loads, default=None,
                        help='JSON overrides of the teacher sizes, e.g. \'{"width": 64, "num_layers": 2}\'')
    args = vars(parser.parse_args(argv))
    arch_overrides = args.pop("arch") or {}
    compile_, sweep = not args.pop("no_compile"), not args.pop("no_sweep")
    arch = replace(TEACHERS[args["family"]], **arch_overrides)
    return TrainConfig(**args, arch=arch, compile=compile_, sweep=sweep)


def main(argv: list[str] | None = None) -> int:
    try:
        train(parse_args(argv), command="python -m hprune.toy.train " + " ".join(sys.argv[1:] if argv is None else argv))
    except HpruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
