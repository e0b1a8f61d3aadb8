#!/usr/bin/env bash
# The feature-loss weight on the *val* split, CPU-sized: HPP+PWP (and BK-SDM) at 20% on shapes-sd3, HPP with the plan the
# ablation chose on val (r_thres 0.05), 200 steps at batch 32, distilled with feature weight 1 (the
# paper's) and 1e-4 (the authors' scripts'). ~45 minutes on 2 CPU cores.
#   bash scripts/featweight_val_cpu.sh            -> results/featweight-val-shapes-sd3.json
set -eu
PY=${PYTHON:-python}; WORK=${WORK:-runs/featweight}
for w in 1 1e-4; do
  $PY -m hprune ablate --teacher shapes-sd3 --run-dir results/analysis/shapes-sd3 --out "$WORK/feat$w" \
    --results "$WORK/feat$w.json" --split val --ratios 0.2 --methods hpp,hpp+pwp,bkscore --r-thres 0.05 \
    --steps 200 --batch-size 32 --per-category 16 --data-size 2048 --feat-weight "$w" 2>/dev/null | grep "^|"
done
$PY - "$WORK" <<'PYEOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
rows = [{**r, "feat_weight": float(w), "split": "val", "steps": 200, "batch_size": 32}
        for w in ("1", "1e-4") for r in json.loads((work / f"feat{w}.json").read_text())]
for r in rows:
    r.pop("per_category", None)
Path("results/featweight-val-shapes-sd3.json").write_text(json.dumps(rows, indent=1) + "\n")
print("wrote results/featweight-val-shapes-sd3.json")
PYEOF
