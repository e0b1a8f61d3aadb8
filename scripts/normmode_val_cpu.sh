#!/usr/bin/env bash
# The removed AdaLN norms' replacement on the *val* split, CPU-sized: HPP (pruned only) and HPP+PWP at 20% on
# shapes-sd3 with the plan of the `--norm-mode mean` analysis (results/analysis/shapes-sd3-mean, r_thres 0.05),
# 200 steps at batch 32, feature weight 1e-4 -- the same budget as the identity rows of
# scripts/featweight_val_cpu.sh, to compare with them. ~12 minutes on 2 CPU cores.
#   bash scripts/normmode_val_cpu.sh            -> results/normmode-val-shapes-sd3.json
set -eu
PY=${PYTHON:-python}; WORK=${WORK:-runs/normmode}
$PY -m hprune ablate --teacher shapes-sd3 --run-dir results/analysis/shapes-sd3-mean --out "$WORK/mean" \
  --results "$WORK/mean.json" --split val --ratios 0.2 --methods hpp,hpp+pwp --r-thres 0.05 \
  --steps 200 --batch-size 32 --per-category 16 --data-size 2048 --feat-weight 1e-4 2>/dev/null | grep "^|"
$PY - "$WORK" <<'PYEOF'
import json, sys
from pathlib import Path
rows = [{**r, "norm_mode": "mean", "feat_weight": 1e-4, "split": "val", "steps": 200, "batch_size": 32}
        for r in json.loads((Path(sys.argv[1]) / "mean.json").read_text())]
for r in rows:
    r.pop("per_category", None)
Path("results/normmode-val-shapes-sd3.json").write_text(json.dumps(rows, indent=1) + "\n")
print("wrote results/normmode-val-shapes-sd3.json")
PYEOF
