"""Time `hprune.distill` at real size on random weights (issue 19): one row of results/scale.json.

    PYTHONPATH=src python scripts/scale_distill.py --arch sd3.5-large --batch 2 --compile --out scale.json
    accelerate launch --multi_gpu --num_processes 2 scripts/scale_distill.py ... --strategy ddp

Builds the architecture with random weights (hprune.bench.archs; weights change neither speed
nor memory), the plan (the authors' blocks 25-28, 31-34 for SD3.5 Large at 20%, late blocks
elsewhere: hprune.bench.plans), random latents and text embeddings of the model's shapes
(hprune.distill.synthetic), then runs the product loop `hprune.distill.distill` for
--warmup + --steps steps and reads its training_summary.json (per-step seconds, peak memory).
`--batch` is per GPU; the global batch is --batch x processes.

MFU counts the FLOPs a step needs, counted by torch's FlopCounterMode on one eager step at
batch 1 (teacher forward, student forward, backward through the trained blocks and the
activation gradients behind them; nothing PWP froze in front of the first trained block, no
recomputation from checkpointing), scaled by the batch, against the dense bf16 peak one large
GEMM reaches on the same GPU (measured here; about 790 TFLOP/s on an H200). The row says both.
The student's frozen first blocks replay the teacher's output (hprune.distill.prefix; the row's
`shared_prefix_blocks`), so their forward is neither run nor counted: a step needs fewer FLOPs,
and samples/s, not MFU, shows the gain. --no-share-prefix runs and counts them as before.
--compile compiles every block with recompile fallbacks turned into errors, so a row exists
only where no block fell back to eager. --tiny shrinks the widths for a dry run on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hprune.bench.archs import build_transformer, get_arch
from hprune.bench.plans import published_plan
from hprune.distill import DistillConfig, distill
from hprune.distill.synthetic import synthetic_data
from hprune.model.attention import use_fastest_attention

# What the distillation loop measured is (the `loop` key, docs/scale.md): fused AdamW on the GPU and the
# next batch drawn during the step, since 3da0835; each step's losses read on the host a step late
# (hprune.distill.readback), since 906195c. Change it with the loop.
LOOP = "fused+prefetch+lagged-read"
TINY = {"sd3": dict(attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
                    pooled_projection_dim=16, in_channels=4, out_channels=4, pos_embed_max_size=16, sample_size=8),
        "flux": dict(attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=8,
                     in_channels=16, axes_dims_rope=(2, 2, 4))}


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="sd3.5-large")
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--task", default="distill-pwp", choices=("distill-pwp", "distill-whole"))
    p.add_argument("--batch", type=int, default=1, help="per GPU")
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--strategy", default="ddp", choices=("ddp", "fsdp"))
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-share-prefix", action="store_true",
                   help="run the student's frozen first blocks instead of replaying the teacher's (hprune.distill.prefix)")
    p.add_argument("--no-overlap-optimizer", action="store_true",
                   help="the optimizer step after the backward, not beside the next teacher forward (hprune.distill.optimizer_stream)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the timing (compilation)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--text-tokens", type=int, help="default: the pipeline's (SD3 333, FLUX 512)")
    p.add_argument("--tiny", action="store_true", help="tiny widths, CPU allowed: a dry run of this script")
    p.add_argument("--out", default="results/scale.json")
    p.add_argument("--profile", metavar="JSON", help="record CUDA kernels (torch.profiler) and write where the last step's "
                   "GPU time went (scripts/trace_summary.py) to JSON, the trace beside it (JSON.trace.json.gz), instead of saving a row: "
                   "the profiler slows the step")
    return p.parse_args()


def gemm_peak_tflops(device, n: int = 8192, repeats: int = 10) -> float | None:
    """Dense bf16 TFLOP/s of one n x n x n matrix product (mean of `repeats` after 3 warm-ups)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def step_flops(teacher, plan, cfg: DistillConfig, data, device) -> float:
    """FLOPs of one training step at batch 1, counted on an eager step of the same setup."""
    from torch.utils.flop_counter import FlopCounterMode

    from hprune.distill.data import draw_batch
    from hprune.distill.freeze import block_scales, match_blocks, param_groups, pwp_boundary
    from hprune.distill.loop import build_student
    from hprune.distill.losses import kd_loss
    from hprune.distill.prefix import replay_prefix, shared_prefix
    from hprune.model.flow import velocity_fn

    student = build_student(teacher, plan).train()
    matched = match_blocks(student, teacher, plan)
    param_groups(student, matched, block_scales(matched, pwp_boundary(plan, None), cfg.pwp, None), cfg.lr, cfg.pwp)
    batch = draw_batch(data, 1, cfg.seed, 0)
    x, sigma, seq, pooled = (t.to(device) for t in (batch.noisy, batch.sigma, batch.seq, batch.pooled))
    velocity = velocity_fn(teacher)
    dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float32
    prefix = shared_prefix(student, matched) if cfg.share_prefix else []
    with FlopCounterMode(display=False) as counter, replay_prefix(prefix):
        with torch.no_grad(), torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
            v_teacher = velocity(teacher, x, sigma, seq, pooled)
        with torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
            loss = kd_loss(velocity(student, x, sigma, seq, pooled), v_teacher)
        loss.backward()
    del student, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return float(counter.get_total_flops())


def save_row(path: Path, row: dict) -> None:
    """Add `row` to the JSON list at `path`, replacing a row of the same configuration."""
    key = ("arch", "task", "gpus", "strategy", "batch", "compiled", "gradient_checkpointing", "optimizer", "device",
           "shared_prefix_blocks", "overlap_optimizer")
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [r for r in rows if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)] + [row]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    from hprune.distill.parallel import process_state

    args = parse()
    if args.profile and not torch.cuda.is_available():
        raise SystemExit("--profile records CUDA kernels and needs a CUDA GPU.")
    if args.profile and args.warmup + args.steps < 2:
        raise SystemExit("--profile reads the last of at least two steps: make --warmup + --steps 2 or more.")
    state = process_state()
    arch = get_arch(args.arch)
    device = state.device
    overrides = TINY[arch.family] if args.tiny else {}
    torch.manual_seed(0)  # the same random teacher on every process
    # bf16 on the GPU (autocast feeds it); float32 for a CPU dry run, which runs without autocast
    teacher = build_transformer(arch, device=device, dtype=None if device.type == "cuda" else torch.float32, **overrides)
    plan = published_plan(arch.name, teacher, args.ratio)
    side, channels = args.resolution // 8, (teacher.config.in_channels // (4 if arch.family == "flux" else 1))
    global_batch = args.batch * state.num_processes
    data = synthetic_data(teacher, global_batch, channels, side, args.text_tokens or (8 if args.tiny else None))
    cfg = DistillConfig(steps=args.warmup + args.steps, batch_size=global_batch, lr=1e-5, optimizer=args.optimizer,
                        pwp=args.task == "distill-pwp", mixed_precision="bf16" if device.type == "cuda" else "no",
                        gradient_checkpointing=args.gradient_checkpointing, compile=args.compile,
                        strategy=args.strategy, checkpoint_every=10**9, share_prefix=not args.no_share_prefix,
                        overlap_optimizer=not args.no_overlap_optimizer)
    attention = use_fastest_attention(teacher)  # what distill() picks for both models
    peak = gemm_peak_tflops(device)
    flops = step_flops(teacher, plan, cfg, data, device) * global_batch
    with tempfile.TemporaryDirectory() as tmp, _profiled(args.profile if state.is_main_process else None, tmp) as prof:
        run = _shared_dir(state, tmp)
        distill(teacher, plan, data, cfg, run, progress=False)
        summary = json.loads((run / "training_summary.json").read_text()) if state.is_main_process else None
    if not state.is_main_process:
        return
    if prof is not None:
        print(json.dumps(prof["summary"]))
        return
    step_s = statistics.median(summary["step_seconds"][args.warmup:])
    per_gpu = flops / step_s / state.num_processes / 1e12
    row = {"arch": arch.name + (" (tiny)" if args.tiny else ""), "task": args.task, "gpus": state.num_processes,
           "strategy": args.strategy if state.num_processes > 1 else "single", "batch": args.batch,
           "peak_gib": summary.get("peak_gib"), "step_s": round(step_s, 4),
           "samples_per_s": round(global_batch / step_s, 3), "mfu": round(per_gpu / peak, 4) if peak else None,
           "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "attention": attention, "loop": LOOP,
           "tflops_per_gpu": round(per_gpu, 1), "gemm_peak_tflops": round(peak, 1) if peak else None,
           "step_tflop": round(flops / 1e12, 3), "global_batch": global_batch, "compiled": args.compile,
           "gradient_checkpointing": args.gradient_checkpointing, "optimizer": args.optimizer,
           "resolution": args.resolution, "text_tokens": data.seq.shape[1],
           "trainable_params": summary["trainable_params"], "plan_units": [u.key for u in plan.units],
           "shared_prefix_blocks": len(summary.get("shared_prefix_blocks", [])),
           "overlap_optimizer": summary.get("optimizer_stream", False)}
    if args.compile:  # graphs Dynamo built; a fallback to eager would have raised (hprune.distill.loop._compile)
        from torch._dynamo.utils import counters

        row["dynamo_graphs"] = counters["stats"]["unique_graphs"]
    save_row(Path(args.out), row)
    print(json.dumps(row))


@contextlib.contextmanager
def _profiled(path: str | None, tmp: str):
    """With a path: the CUDA kernels of the whole run recorded (by the main process: the caller passes
    None on the others); on exit, the last step's summary (scripts/trace_summary.py) written to path and
    kept in the yielded dict. Without: None."""
    if path is None:
        yield None
        return
    from torch.profiler import ProfilerActivity, profile

    from trace_summary import summarize

    out = {}
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        yield out
    trace = Path(tmp) / "trace.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(f"{path}.trace.json.gz", "wb") as dst:  # for another reading later
        shutil.copyfileobj(src, dst)
    out["summary"] = summarize(json.loads(trace.read_text()))
    Path(path).write_text(json.dumps(out["summary"], indent=1) + "\n")


def _shared_dir(state, tmp: str) -> Path:
    """One run folder all processes agree on: processes of one host share /tmp, but each made
    its own TemporaryDirectory, so the main process's name is broadcast."""
    if state.num_processes == 1:
        return Path(tmp) / "run"
    from accelerate.utils import broadcast_object_list

    name = [str(Path(tmp) / "run")]
    broadcast_object_list(name, from_process=0)
    return Path(name[0])


if __name__ == "__main__":
    main()
