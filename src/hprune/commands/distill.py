"""`hprune distill --teacher MODEL --plan plan.json --out DIR [--pwp] [--sgdistill]`."""

from __future__ import annotations

from pathlib import Path

import torch

from hprune.distill import DistillConfig, distill
from hprune.distill.config import SG_GRANULARITIES, SG_GRANULARITY_HELP, SG_SCALE_HELP, SG_SCALES
from hprune.distill.data import DistillData
from hprune.distill.sensitivity import load_sensitivity
from hprune.errors import HpruneError
from hprune.io import load_any_pipeline
from hprune.plan import Plan

DATA_FILE = "distill_data.safetensors"


def add_arguments(parser):
    parser.add_argument("--teacher", required=True, help="shapes-sd3 | shapes-flux | a diffusers pipeline folder")
    parser.add_argument("--plan", required=True, help="plan.json (from `hprune plan`)")
    parser.add_argument("--out", required=True, help="output folder: the distilled pruned model")
    parser.add_argument("--data", default="shapes:4096",
                        help="shapes[:N] (renders of the training split), an image folder with .txt captions, "
                             "or a cache .safetensors written by an earlier run")
    parser.add_argument("--resolution", type=int, default=1024, help="image size for an image-folder dataset")
    parser.add_argument("--pwp", action="store_true", help="freeze surviving blocks before the first pruned one")
    parser.add_argument("--pwp-boundary", type=int, help="freeze surviving blocks before this forward position")
    parser.add_argument("--sgdistill", action="store_true", help="per-block learning rate 1/dP (needs --sensitivity)")
    parser.add_argument("--sg-scale", default="inverse", choices=SG_SCALES, help=SG_SCALE_HELP)
    parser.add_argument("--sg-granularity", default="block", choices=SG_GRANULARITIES, help=SG_GRANULARITY_HELP)
    parser.add_argument("--sensitivity", help="contribution.jsonl from `hprune profile`")
    parser.add_argument("--norm-means", help="norm_means.pt from `hprune profile` (plans with norm_mode mean)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    for name, default, kind in (("steps", 1000, int), ("batch-size", 32, int), ("lr", 1e-4, float),
                                ("kd-weight", 1.0, float), ("feat-weight", 1.0, float),
                                ("checkpoint-every", 200, int), ("seed", 0, int)):
        parser.add_argument(f"--{name}", type=kind, default=default)
    parser.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    parser.add_argument("--mixed-precision", default="bf16" if torch.cuda.is_available() else "no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--ema-decay", type=float)


def load_teacher(name_or_path: str):
    """(pipeline, transformer) for a shapes teacher name or a pipeline folder."""
    pipe = load_any_pipeline(name_or_path)
    return pipe, pipe.transformer


def build_data(spec: str, pipe, out: Path, resolution: int, seed: int) -> DistillData:
    cache = out / DATA_FILE
    if cache.is_file():
        return DistillData.load(cache)
    if spec.endswith(".safetensors"):
        return DistillData.load(spec)
    if spec.startswith("shapes"):
        from hprune.distill.sources import shapes_data

        n = int(spec.split(":", 1)[1]) if ":" in spec else 4096
        data = shapes_data(pipe, n, seed=seed)
    else:
        from hprune.distill.sources import folder_data

        data = folder_data(pipe, spec, resolution)
    out.mkdir(parents=True, exist_ok=True)
    data.save(cache)
    return data


def run(args) -> int:
    if args.sgdistill and not args.sensitivity:
        raise HpruneError("--sgdistill needs --sensitivity RUN_DIR/contribution.jsonl from `hprune profile`.")
    cfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                        kd_weight=args.kd_weight, feat_weight=args.feat_weight, pwp=args.pwp or args.pwp_boundary is not None,
                        pwp_boundary=args.pwp_boundary, sgdistill=args.sgdistill, sg_scale=args.sg_scale, sg_granularity=args.sg_granularity,
                        checkpoint_every=args.checkpoint_every,
                        seed=args.seed, mixed_precision=args.mixed_precision,
                        gradient_checkpointing=args.gradient_checkpointing, ema_decay=args.ema_decay)
    plan = Plan.load(args.plan)
    pipe, teacher = load_teacher(args.teacher)
    out = Path(args.out)
    data = build_data(args.data, pipe, out, args.resolution, args.seed)
    sensitivity = load_sensitivity(args.sensitivity) if args.sensitivity else None
    norm_means = torch.load(args.norm_means, weights_only=True) if args.norm_means else None
    distill(teacher, plan, data, cfg, out, sensitivity=sensitivity, norm_means=norm_means, resume=args.resume)
    print(f"distilled student saved to {out} (load with hprune.load_pruned)")
    return 0
