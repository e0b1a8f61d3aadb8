"""`hprune distill --teacher MODEL --plan plan.json --out DIR [--pwp] [--sgdistill]`.

On several GPUs: `accelerate launch --num_processes N -m hprune distill ... [--strategy fsdp]`;
--batch-size stays the global batch (hprune.distill.parallel)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hprune.distill.config import (OPTIMIZERS, PRECISIONS, SG_GRANULARITIES, SG_GRANULARITY_HELP, SG_SCALE_HELP,
                                   SG_SCALES, STRATEGIES, STRATEGY_HELP, DistillConfig)
from hprune.distill.sensitivity import load_sensitivity
from hprune.core.errors import HpruneError
from hprune.planning.plan import Plan

if TYPE_CHECKING:
    from hprune.distill.data import DistillData




def add_arguments(parser):
    parser.add_argument("--teacher", required=True, help="shapes-sd3 | shapes-flux | a diffusers pipeline folder")
    parser.add_argument("--plan", required=True, help="plan.json (from `hprune plan`)")
    parser.add_argument("--out", required=True, help="run folder: the distilled model goes to OUT/model, "
                        "checkpoints, logs and the data cache beside it")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", default="shapes:4096",
                        help="shapes[:N] (renders of the training split), an image folder with .txt captions, "
                             "or a cache .safetensors written by an earlier run")
    source.add_argument("--synthetic-data", type=int, metavar="N",
                        help="N random latents and text embeddings of the model's shapes (at --resolution), "
                             "to measure speed and memory without data")
    parser.add_argument("--resolution", type=int, default=1024, help="image size for an image-folder dataset")
    parser.add_argument("--pwp", action="store_true", help="freeze intact blocks before the first removed whole block (a block that lost a part trains)")
    parser.add_argument("--pwp-boundary", type=int, help="freeze surviving blocks before this forward position")
    parser.add_argument("--sgdistill", action="store_true", help="per-block learning rate 1/dP (needs --sensitivity)")
    parser.add_argument("--sg-scale", default=DistillConfig.sg_scale, choices=SG_SCALES, help=SG_SCALE_HELP)
    parser.add_argument("--sg-granularity", default=DistillConfig.sg_granularity, choices=SG_GRANULARITIES,
                        help=SG_GRANULARITY_HELP)
    parser.add_argument("--sensitivity", help="contribution.jsonl from `hprune profile`")
    parser.add_argument("--norm-means", help="norm_means.pt from `hprune profile` (plans with norm_mode mean)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    for name, kind, help_text in (("steps", int, "training steps"), ("batch-size", int, "images per step, over all processes"),
                                  ("lr", float, "learning rate"), ("kd-weight", float, "weight of the output loss"),
                                  ("feat-weight", float, "weight of the feature loss"),
                                  ("checkpoint-every", int, "steps between checkpoints"), ("seed", int, "random seed")):
        parser.add_argument(f"--{name}", type=kind, default=getattr(DistillConfig, name.replace("-", "_")), help=help_text)
    parser.add_argument("--optimizer", default=DistillConfig.optimizer, choices=OPTIMIZERS,
                        help="optimizer; adamw8bit (bitsandbytes, CUDA) keeps Adam's state in 8 bits")
    parser.add_argument("--strategy", default=DistillConfig.strategy, choices=STRATEGIES, help=STRATEGY_HELP)
    parser.add_argument("--compile", action="store_true", help="torch.compile every transformer block")
    parser.add_argument("--mixed-precision", default="auto", type=_precision,
                        help=f"{' | '.join(PRECISIONS)}, or auto: bf16 when a CUDA GPU is visible, else no")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations to save memory")
    parser.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights (e.g. 0.999)")
    parser.add_argument("--no-share-prefix", action="store_true",
                        help="run the student's frozen first blocks instead of replaying the teacher's output "
                             "(the same result, slower; docs/distill.md)")
    parser.add_argument("--no-overlap-optimizer", action="store_true",
                        help="on a GPU, run clipping and the optimizer step after the backward instead of on a "
                             "second stream beside the next teacher forward (the same result; docs/distill.md)")


def _precision(text: str) -> str:
    if text != "auto":
        return text
    import torch

    return "bf16" if torch.cuda.is_available() else "no"


@contextmanager
def _removed_if_refused(out: Path):
    """A run refused by its settings (HpruneError: e.g. PWP froze every weight) leaves
    no data cache, nor the --out folder it created, behind."""
    from hprune.distill.sources import DATA_FILE

    existed = out.exists()
    before = set(out.glob(DATA_FILE.format(key="*"))) if existed else set()
    try:
        yield
    except HpruneError:
        for made in set(out.glob(DATA_FILE.format(key="*"))) - before:
            made.unlink()
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def run(args) -> int:
    if args.sgdistill and not args.sensitivity:
        raise HpruneError("--sgdistill needs --sensitivity RUN_DIR/contribution.jsonl from `hprune profile`.")
    cfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                        kd_weight=args.kd_weight, feat_weight=args.feat_weight, pwp=args.pwp or args.pwp_boundary is not None,
                        pwp_boundary=args.pwp_boundary, sgdistill=args.sgdistill, sg_scale=args.sg_scale, sg_granularity=args.sg_granularity,
                        checkpoint_every=args.checkpoint_every,
                        seed=args.seed, mixed_precision=args.mixed_precision,
                        gradient_checkpointing=args.gradient_checkpointing, ema_decay=args.ema_decay,
                        strategy=args.strategy, compile=args.compile, share_prefix=not args.no_share_prefix,
                        overlap_optimizer=not args.no_overlap_optimizer)
    import torch

    from hprune.distill import distill
    from hprune.folders import load_pipeline, save
    from hprune.core.atomic import check_out
    from hprune.folders.loading import check_plan_for
    from hprune.distill.loop import check_run_folder
    from hprune.folders.paths import RUN_MODEL

    plan = Plan.load(args.plan)
    out = Path(args.out)
    check_out(out / RUN_MODEL)
    # Every input is checked before anything is loaded or made.
    check_plan_for(plan, args.teacher)
    check_run_folder(out, args.resume)
    sensitivity = load_sensitivity(args.sensitivity) if args.sensitivity else None
    norm_means = torch.load(args.norm_means, weights_only=True) if args.norm_means else None
    pipe = load_pipeline(args.teacher)
    with _removed_if_refused(out):
        data = _data(args, pipe, out)
        student = distill(pipe.transformer, plan, data, cfg, out, sensitivity=sensitivity, norm_means=norm_means,
                          resume=args.resume)
    from hprune.distill.parallel import process_state

    if not process_state().is_main_process:  # every process holds the same student; one writes it
        return 0
    model = save(student, out / RUN_MODEL, source=args.teacher)
    print(f"distilled model saved to {model} (load with hprune.load or hprune.load_pipeline)")
    return 0


def _data(args, pipe, out: Path) -> DistillData:
    if args.synthetic_data is None:
        from hprune.distill.parallel import process_state

        with process_state().main_process_first():  # one process writes the cache, the others read it
            from hprune.distill.sources import build_data

            return build_data(args.data, pipe, out, args.resolution, args.seed)
    from hprune.distill.synthetic import input_shape, synthetic_data

    return synthetic_data(pipe.transformer, args.synthetic_data, *input_shape(pipe, args.resolution), seed=args.seed)


def out_of_memory_hint(args) -> str:
    """What to turn when a step does not fit: the knobs not already turned (the CLI's error boundary)."""
    knobs = [f"lower --batch-size (now {args.batch_size})"]
    if not args.gradient_checkpointing:
        knobs.append("add --gradient-checkpointing")
    if args.optimizer != "adamw8bit":
        knobs.append("pass --optimizer adamw8bit")
    if args.strategy != "fsdp":
        knobs.append("shard the student over more GPUs with `accelerate launch --num_processes N` and --strategy fsdp")
    else:
        knobs.append("launch on more GPUs")
    return ", ".join(knobs[:-1]) + " or " + knobs[-1]
