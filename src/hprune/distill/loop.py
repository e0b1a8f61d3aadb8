"""The distillation loop, on accelerate: one GPU, or several by `accelerate launch` with the
global batch split over them (DDP, or FSDP2 with --strategy fsdp: hprune.distill.parallel)."""

from __future__ import annotations

import copy
import csv
import json
import time
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import torch

from hprune.model.attention import use_fastest_attention
from hprune.distill import parallel
from hprune.distill.checkpoint import latest_checkpoint, load_checkpoint
from hprune.distill.config import DistillConfig
from hprune.distill.data import DistillData, draw_batch
from hprune.distill.freeze import block_scales, match_blocks, param_groups, pwp_boundary, trains
from hprune.distill.losses import FeatureTap, feature_loss, kd_loss
from hprune.distill.optimizer_stream import OptimizerStream
from hprune.distill.prefix import replay_prefix, shared_prefix
from hprune.distill.readback import LaggedReadback
from hprune.model.flow import velocity_fn
from hprune.core.errors import HpruneError
from hprune.core.progress import Progress
from hprune.core.provenance import record
from hprune.prune.surgery import prune_

LOSS_CSV = "loss.csv"
SUMMARY = "training_summary.json"


def build_student(teacher, plan, norm_means=None):
    return prune_(copy.deepcopy(teacher), plan, norm_means)


def _optimizer(groups, cfg: DistillConfig):
    if not groups:
        raise HpruneError("nothing is left to train: PWP/SGDistill froze every weight; move --pwp-boundary.")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw8bit":  # DistillConfig checked that bitsandbytes and a GPU are there
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # one fused kernel per step instead of foreach's ~10 passes over the weights and states: at the
    # whole SD3.5 Large student (6.3B float32 weights) that is tens of ms a step on an H200
    on_gpu = all(p.device.type == "cuda" for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=on_gpu or None)


def _keep_kernel(optimizer) -> None:
    """A checkpoint's param groups carry the implementation flags of the run that wrote it
    (load_state_dict restores them): keep this run's choice, so a resumed GPU run is fused too."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    if "fused" not in inner.defaults:
        return
    for group in inner.param_groups:
        group["fused"], group["foreach"] = inner.defaults["fused"], inner.defaults["foreach"]


def check_run_folder(out: str | Path, resume: bool) -> None:
    """Raise HpruneError when `out` holds an earlier distillation and `resume` is not
    set: callers check this before they make any data."""
    out = Path(out)
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is not None and not resume:
        raise HpruneError(f"{out} holds a checkpoint ({ckpt.name}); pass --resume to continue or choose another --out.")
    if ckpt is None and (out / LOSS_CSV).exists() and not resume:
        raise HpruneError(f"{out} holds an earlier distillation; pass --resume to continue it or choose another --out.")


def _start(out: Path, resume: bool, model, optimizer, ema) -> int:
    check_run_folder(out, resume)
    ckpt = latest_checkpoint(out / "checkpoints")
    return 0 if ckpt is None else load_checkpoint(ckpt, model, optimizer, ema)


def _trim_log(path: Path, start: int) -> None:
    """Keep log rows before `start`, so a resumed run's log equals an uninterrupted one."""
    if not path.exists():
        return
    rows = list(csv.reader(path.open()))
    keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) < start]
    path.write_text("".join(",".join(r) + "\n" for r in keep))


def distill(teacher, plan, data: DistillData, cfg: DistillConfig, out_dir: str | Path,
            sensitivity: dict[str, float] | None = None, norm_means=None, resume: bool = False,
            progress: bool = True):
    """Train the physically pruned student and return it (unwrapped), its history
    holding the prune and distill steps: save it with `hprune.save`.

    `out_dir` is the run folder: checkpoints/ (resume with `resume=True`),
    loss.csv, training_summary.json and tensorboard/ land there, never in a
    model folder. Raises HpruneError when the run folder holds an earlier run
    and `resume` is not set, or when the settings leave nothing to train."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = parallel.make_accelerator(cfg)
    teacher = teacher.to(accelerator.device).eval().requires_grad_(False)
    student = build_student(teacher, plan, norm_means).train()
    for model in (teacher, student):  # before compiling: cuDNN's attention on Hopper at real sizes
        use_fastest_attention(model)
    if cfg.gradient_checkpointing:
        student.enable_gradient_checkpointing()
    matched = match_blocks(student, teacher, plan)
    scales = block_scales(matched, pwp_boundary(plan, cfg.pwp_boundary), cfg.pwp,
                          sensitivity if cfg.sgdistill else None, cfg.sg_scale, cfg.sg_granularity)
    groups = param_groups(student, matched, scales, cfg.lr, cfg.pwp)
    low_precision = _float32_master_weights(groups, cfg)
    if cfg.compile:
        _compile(teacher, student)
    sharded = parallel.wants_sharding(accelerator, cfg)
    if sharded:
        groups = parallel.shard_(student, groups, accelerator)
    optimizer = _optimizer(groups, cfg)
    ema = _make_ema(student, cfg)
    check_run_folder(out, resume)
    accelerator.wait_for_everyone()  # every process checked the folder before the main one writes to it
    if sharded:
        wrapped, optimizer = student, accelerator.prepare(optimizer)
        start = parallel.load_sharded(out / "checkpoints", wrapped, optimizer) if resume else 0
    else:
        start = _start(out, resume, student, optimizer, ema)
        wrapped, optimizer = accelerator.prepare(student, optimizer)
    _keep_kernel(optimizer)
    velocity = velocity_fn(teacher)
    taps = _taps(matched, scales)
    log_path = out / LOSS_CSV
    if accelerator.is_main_process:
        _trim_log(log_path, start)
    board = _tensorboard(out) if accelerator.is_main_process else None
    t0, last, step_seconds = time.time(), {}, []
    bar = Progress(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress or not accelerator.is_main_process,
                   desc="distill", unit="step")  # redraws each second: a step at 1024 px on CPU takes long
    upcoming = _device_batch(data, cfg, accelerator, start) if start < cfg.steps else None
    prefix = shared_prefix(student, matched) if cfg.share_prefix and not sharded else []
    # sharded (FSDP2) steps gather and scatter on their own streams: they stay in order
    side = OptimizerStream(accelerator.device if cfg.overlap_optimizer and not sharded else None)
    trained = [p for p in student.parameters() if p.requires_grad]
    readback = LaggedReadback(accelerator.device)

    def record(done) -> None:  # a step's losses, once they are on the host
        nonlocal last
        if done is None:
            return
        last = {"step": done.step, **dict(zip(("loss", "kd", "feat"), done.values))}
        step_seconds.append(done.seconds)
        if accelerator.is_main_process:
            _log(log_path, last)
            if board is not None:
                for key in ("loss", "kd", "feat"):
                    board.add_scalar(f"distill/{key}", last[key], done.step)
            bar.set_postfix(loss=f"{last['loss']:.4g}")

    # the teacher's hooks come off even when a step fails: the caller keeps its teacher
    with replay_prefix(prefix), closing(taps[0]), closing(taps[1]), _last_row_on_failure(readback, record):
        for step in bar:
            x, sigma, seq, pooled = upcoming
            with torch.no_grad(), accelerator.autocast():
                v_teacher = velocity(teacher, x, sigma, seq, pooled)
            side.wait()  # the student reads the weights the last step's optimizer wrote
            with accelerator.autocast():
                v_student = velocity(wrapped, x, sigma, seq, pooled, config=student.config)
                l_kd = kd_loss(v_student, v_teacher)
                l_feat = feature_loss(taps[0].pop(), taps[1].pop()).to(l_kd.device)
                loss = cfg.kd_weight * l_kd + cfg.feat_weight * l_feat
            accelerator.backward(loss)
            side.run(lambda: _update(cfg, accelerator, wrapped, optimizer, ema, student), trained)
            if step + 1 < cfg.steps:  # drawn on the CPU while the GPU still runs this step
                upcoming = _device_batch(data, cfg, accelerator, step + 1)
            # the last step's losses are read now, while this one runs (hprune.distill.readback)
            record(readback.push(step, accelerator.reduce(torch.stack([loss, l_kd, l_feat]).detach().float(), "mean")))
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                record(readback.flush())  # a resumed run's loss.csv has every step before its checkpoint
                side.wait()
                parallel.save(accelerator, out / "checkpoints", step + 1, student, wrapped, optimizer, ema)
                readback.restart_clock()
        record(readback.flush())
        side.wait()
    if board is not None:
        board.close()
    if cfg.compile:  # the caller gets its teacher back as it gave it, and an uncompiled student
        _uncompile(teacher)
        _uncompile(student)
    student = parallel.plain_student(accelerator, wrapped, lambda: build_student(teacher, plan, norm_means))
    if ema is not None:
        ema.copy_to(student.parameters())
    for p, dtype in low_precision:
        p.data = p.data.to(dtype)
    if accelerator.is_main_process:
        _finish(out, student, plan, cfg, scales, last, time.time() - t0, start, step_seconds, accelerator, prefix,
                side.stream is not None)
    return student


@contextmanager
def _last_row_on_failure(readback: LaggedReadback, record):
    """When a step fails, the step before it still gets its loss.csv row (read a step late); the
    step's own error is what the caller sees, even if reading that row fails too."""
    try:
        yield
    except BaseException:
        with suppress(Exception):
            record(readback.flush())
        raise


def _update(cfg: DistillConfig, accelerator, wrapped, optimizer, ema, student) -> None:
    """Clip, step, clear the gradients, move the EMA: the part of a step that only the student's next
    forward needs (hprune.distill.optimizer_stream)."""
    if cfg.grad_clip:
        parallel.clip_grad_norm_(accelerator, wrapped, cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.step(student.parameters())


def _device_batch(data: DistillData, cfg: DistillConfig, accelerator, step: int) -> tuple[torch.Tensor, ...]:
    """This process's share of step `step`'s global batch (drawn alike on every process, so the
    samples do not depend on the number of processes): noisy input, sigma, sequence and pooled
    text embeddings on the accelerator's device. Copies from pinned memory do not wait for the GPU."""
    batch = draw_batch(data, cfg.batch_size, cfg.seed, step, 0, cfg.logit_mean, cfg.logit_std)
    batch = parallel.local_slice(batch, accelerator)
    device = accelerator.device
    tensors = (batch.noisy, batch.sigma, batch.seq, batch.pooled)
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def _float32_master_weights(groups, cfg: DistillConfig) -> list:
    """With --mixed-precision the trained weights of a bf16/fp16 teacher's copy are kept in
    float32 (autocast computes in low precision), so small updates are not rounded away.
    Returns (parameter, its dtype) to cast back once trained."""
    if cfg.mixed_precision == "no":
        return []
    low = [(p, p.dtype) for g in groups for p in g["params"] if p.dtype in (torch.bfloat16, torch.float16)]
    for p, _ in low:
        p.data = p.data.float()
    return low


def _compile(teacher, student) -> None:
    """Every block of both models compiled. The teacher runs under no_grad and the student with
    grad (and with float32 trained blocks), so one block class meets several guard sets: the limit
    is raised to fit all of them, and a hit fails instead of silently running eager."""
    import torch._dynamo

    from hprune.model.compile import RECOMPILES_PER_SHAPE, compile_blocks_, raise_recompile_limit

    shapes = sum(compile_blocks_(teacher).values()) + sum(compile_blocks_(student).values())
    raise_recompile_limit(4 * RECOMPILES_PER_SHAPE * shapes)
    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
        torch._dynamo.config.fail_on_recompile_limit_hit = True


def _uncompile(model) -> None:
    import torch._dynamo

    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
        torch._dynamo.config.fail_on_recompile_limit_hit = False  # torch's default, for later compiles
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None  # what nn.Module.compile set


def _tensorboard(out: Path):
    """A TensorBoard writer when the tensorboard package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _make_ema(student, cfg: DistillConfig):
    if cfg.ema_decay is None:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(student.parameters(), decay=cfg.ema_decay)


def _taps(matched, scales):
    keys = [m for m in matched if trains(m, scales)]
    return (FeatureTap({m.unit.key: m.student for m in keys}), FeatureTap({m.unit.key: m.teacher for m in keys}))


def _log(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a") as fh:
        if new:
            fh.write("step,loss,kd,feat\n")
        fh.write(f"{row['step']},{row['loss']:.8g},{row['kd']:.8g},{row['feat']:.8g}\n")


def _finish(out: Path, student, plan, cfg, scales, last, seconds, start, step_seconds=(), accelerator=None,
            prefix=(), optimizer_stream: bool = False) -> None:
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    summary = {"config": cfg.to_dict(), "steps": cfg.steps, "resumed_from": start, "final": last,
               "seconds": round(seconds, 2), "trainable_params": trainable,
               "total_params": sum(p.numel() for p in student.parameters()), "block_lr_scales": scales,
               "processes": accelerator.num_processes if accelerator else 1,
               "sharded": bool(accelerator and parallel.wants_sharding(accelerator, cfg)),
               "step_seconds": [round(s, 5) for s in step_seconds],
               "shared_prefix_blocks": [m.unit.key for m in prefix],
               "optimizer_stream": optimizer_stream}
    if torch.cuda.is_available():
        summary["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)  # this process's GPU
    (out / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    record(student, "distill", summary=summary)
