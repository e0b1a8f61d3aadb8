"""Distilled shapes students for CPU studies of 4-bit quality: one teacher's rows at seed 0 with the
recipe defaults of the tables (docs/results.md), each student's weights saved in bf16.

    PYTHONPATH=src python3 scripts/students_device.py shapes-sd3 --rows hpp+pwp-0.2,hpp+pwp-0.3 --out OUT

Writes OUT/<teacher>-<row>.safetensors ("+" in a row name written "_") (the pruned student's state dict; rebuild it on CPU by pruning
the teacher with results/tables/<teacher>/<row>/plan.json and loading these weights). The rows' plans
are the tables' own (same analysis, same r_thres), so no test image is read here.
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def train_one(teacher: str, row: str, work: str, out: str, steps: int, data_size: int) -> str:
    import torch
    from safetensors.torch import save_file

    from hprune.distill import DistillConfig
    from hprune.experiments.ablate import AblateConfig, RowSpec, _device, train_row
    from hprune.planning.scoring import load_run
    from hprune.toy.pipeline import load_pipeline

    method, ratio = row.rsplit("-", 1)
    device = _device()
    dcfg = DistillConfig(steps=steps, batch_size=128, lr=1e-4, feat_weight=1e-4, checkpoint_every=max(1, steps // 4),
                         mixed_precision="bf16" if device == "cuda" else "no")
    cfg = AblateConfig(ratios=(float(ratio),), methods=(method,), r_thres=0.05, distill=dcfg, data_size=data_size)
    pipe = load_pipeline(teacher, device=device)
    student, _ = train_row(RowSpec(method, float(ratio), 0), pipe, load_run(f"results/analysis/{teacher}-mean"),
                           Path(work), cfg)
    path = Path(out) / f"{teacher}-{row}.safetensors".replace("+", "_")  # returned file names: no "+"
    save_file({k: v.detach().to(torch.bfloat16).cpu().contiguous() for k, v in student.state_dict().items()}, path)
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("--rows", required=True, help="e.g. hpp+pwp-0.2,hpp+pwp-0.3")
    parser.add_argument("--work", default="/tmp/students")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=400, help="the tables' 400; fewer only for a smoke test")
    parser.add_argument("--data-size", type=int, default=8192, help="the tables' 8,192 training renders")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    work = Path(args.work) / args.teacher
    work.mkdir(parents=True, exist_ok=True)
    rows = args.rows.split(",")
    from hprune.experiments.ablate import AblateConfig, _device, distill_data
    from hprune.toy.pipeline import load_pipeline

    distill_data(load_pipeline(args.teacher, device=_device()), work, AblateConfig(data_size=args.data_size))  # once
    n = len(rows)
    with ProcessPoolExecutor(n, mp_context=get_context("spawn")) as pool:
        for path in pool.map(train_one, [args.teacher] * n, rows, [str(work)] * n, [args.out] * n, [args.steps] * n,
                             [args.data_size] * n):
            print("wrote", path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
