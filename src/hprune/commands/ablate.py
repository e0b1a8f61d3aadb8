"""`hprune ablate --teacher shapes-sd3 --run-dir RUN --out DIR`: the method tables."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hprune.ablate import METHODS, AblateConfig, ablate, markdown_table, teacher_file
from hprune.distill import DistillConfig
from hprune.distill.config import SG_GRANULARITIES, SG_GRANULARITY_HELP, SG_SCALE_HELP, SG_SCALES


def add_arguments(parser):
    parser.add_argument("--teacher", required=True, help="shapes-sd3 | shapes-flux | a shapes pipeline folder")
    parser.add_argument("--run-dir", required=True, help="the teacher's `hprune profile` run directory")
    parser.add_argument("--out", required=True, help="working folder (resumable: finished rows are kept)")
    parser.add_argument("--results", help="write the rows here as a JSON list (e.g. results/ablation-shapes-sd3.json)")
    parser.add_argument("--ratios", default="0.2,0.3")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--r-thres", type=_r_thres, default=None,
                        help="hpp rows: whole blocks up to this ratio, subcomponents beyond (default: hprune plan's); "
                             "'val' picks it per ratio on the validation split")
    parser.add_argument("--r-thres-steps", type=int, default=0,
                        help="with --r-thres val: distil each candidate plan this many steps before scoring it "
                             "(default 0: score the pruned model)")
    parser.add_argument("--quant", help="also score every row with this 4-bit backend (e.g. bnb-nf4)")
    parser.add_argument("--steps", type=int, default=2000, help="distillation steps per row (same for every row)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--feat-weight", type=float, default=1.0)
    parser.add_argument("--sg-scale", default="inverse", choices=SG_SCALES, help=SG_SCALE_HELP)
    parser.add_argument("--sg-granularity", default="block", choices=SG_GRANULARITIES, help=SG_GRANULARITY_HELP)
    parser.add_argument("--data-size", type=int, default=8192, help="training renders cached for distillation")
    parser.add_argument("--per-category", type=int, default=64, help="test images per category")
    parser.add_argument("--split", default="test", choices=("val", "test"),
                        help="scored on this split: 'val' for choosing settings, 'test' for the tables")
    parser.add_argument("--eval-steps", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1, help="rows trained side by side (one GPU fits several)")


def _r_thres(text: str) -> float | str:
    return text if text == "val" else float(text)


def run(args) -> int:
    dcfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, feat_weight=args.feat_weight,
                         sg_scale=args.sg_scale, sg_granularity=args.sg_granularity, checkpoint_every=max(1, args.steps // 4),
                         mixed_precision="bf16" if torch.cuda.is_available() else "no")
    cfg = AblateConfig(ratios=tuple(float(r) for r in args.ratios.split(",")),
                       methods=tuple(m.strip() for m in args.methods.split(",")), quant=args.quant,
                       r_thres=args.r_thres, r_thres_steps=args.r_thres_steps, distill=dcfg,
                       data_size=args.data_size, per_category=args.per_category,
                       split=args.split, eval_steps=args.eval_steps, jobs=args.jobs)
    rows = ablate(args.teacher, args.run_dir, args.out, cfg)
    teacher = json.loads(teacher_file(Path(args.out), cfg.split).read_text())
    print(markdown_table(teacher, rows))
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.results}")
    return 0
