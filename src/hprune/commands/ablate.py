"""`hprune ablate --teacher shapes-sd3 --run-dir RUN --out DIR`: the method tables."""

from __future__ import annotations

import json
from pathlib import Path

from hprune.experiments.ablate import METHODS, AblateConfig
from hprune.distill.config import SG_GRANULARITIES, SG_GRANULARITY_HELP, SG_SCALE_HELP, SG_SCALES, DistillConfig
from hprune.core.files import write_json
from hprune.quant.names import BACKEND_NAMES


def add_arguments(parser):
    table, dcfg = AblateConfig, DistillConfig  # their defaults are the command's
    parser.add_argument("--teacher", required=True, help="shapes-sd3 | shapes-flux | a shapes pipeline folder")
    parser.add_argument("--run-dir", required=True, help="the teacher's `hprune profile` run directory")
    parser.add_argument("--out", required=True, help="working folder (resumable: finished rows are kept)")
    parser.add_argument("--results", help="write the table rows here as a JSON list (e.g. results/ablation-shapes-sd3.json)")
    parser.add_argument("--ratios", default=",".join(f"{r:g}" for r in table.ratios),
                        help="fractions of parameters removed, one table block each")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="rows of each block, comma-separated; hpp+distill is HPP's plan distilled without PWP, "
                             "so that hpp+pwp against it measures PWP itself")
    parser.add_argument("--r-thres", type=_r_thres, default=None,
                        help="hpp rows: whole blocks up to this ratio, subcomponents beyond (default: hprune plan's); "
                             "'val' picks it per ratio on the validation split")
    parser.add_argument("--r-thres-steps", type=int, default=table.r_thres_steps,
                        help="with --r-thres val: distil each candidate plan this many steps before scoring it "
                             "(0: score the pruned model)")
    parser.add_argument("--quant", choices=BACKEND_NAMES, help="also score every row with this 4-bit backend")
    parser.add_argument("--seeds", type=_seeds, default=None,
                        help="distillation seeds, e.g. 0,1,2: each distilled row runs once per seed; the table gives "
                             "the mean, a 95%% t-interval over seeds and a paired bootstrap of hpp+pwp against the "
                             "best baseline (default: one run at seed 0)")
    parser.add_argument("--steps", type=int, default=dcfg.steps, help="distillation steps per row (same for every row)")
    parser.add_argument("--batch-size", type=int, default=dcfg.batch_size, help="distillation batch size")
    parser.add_argument("--lr", type=float, default=dcfg.lr, help="distillation learning rate")
    parser.add_argument("--feat-weight", type=float, default=dcfg.feat_weight, help="weight of the feature loss")
    parser.add_argument("--sg-scale", default=dcfg.sg_scale, choices=SG_SCALES, help=SG_SCALE_HELP)
    parser.add_argument("--sg-granularity", default=dcfg.sg_granularity, choices=SG_GRANULARITIES, help=SG_GRANULARITY_HELP)
    parser.add_argument("--data-size", type=int, default=table.data_size, help="training renders cached for distillation")
    parser.add_argument("--per-category", type=int, default=table.per_category, help="test images per category")
    parser.add_argument("--split", default=table.split, choices=("val", "test"),
                        help="scored on this split: 'val' for choosing settings, 'test' for the tables")
    parser.add_argument("--eval-steps", type=int, default=table.eval_steps, help="sampling steps of the scored images")
    parser.add_argument("--jobs", type=int, default=table.jobs, help="rows trained side by side (one GPU fits several)")


def _r_thres(text: str) -> float | str:
    return text if text == "val" else float(text)


def _seeds(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes whole numbers separated by commas, like 0,1,2; got '{text}'") from None


def run(args) -> int:
    import torch

    from hprune.experiments.ablate import ablate, markdown_table, teacher_file

    dcfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, feat_weight=args.feat_weight,
                         sg_scale=args.sg_scale, sg_granularity=args.sg_granularity, checkpoint_every=max(1, args.steps // 4),
                         mixed_precision="bf16" if torch.cuda.is_available() else "no")
    cfg = AblateConfig(ratios=tuple(float(r) for r in args.ratios.split(",")),
                       methods=tuple(m.strip() for m in args.methods.split(",")), quant=args.quant, seeds=args.seeds,
                       r_thres=args.r_thres, r_thres_steps=args.r_thres_steps, distill=dcfg,
                       data_size=args.data_size, per_category=args.per_category,
                       split=args.split, eval_steps=args.eval_steps, jobs=args.jobs)
    rows = ablate(args.teacher, args.run_dir, args.out, cfg)
    teacher = json.loads(teacher_file(Path(args.out), cfg.split).read_text())
    print(markdown_table(teacher, rows))
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.results, rows)  # whole or not at all
        print(f"wrote {args.results}")
    return 0
