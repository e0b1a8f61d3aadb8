#!/usr/bin/env bash
# HPP at one ratio with different block/subcomponent switch points (--r-thres), pruned only (no
# distillation), scored on the *validation* split: what the paper leaves open, chosen without the
# test split.  CPU, ~2.5 minutes a setting:  bash scripts/rthres_val.sh shapes-sd3 0.2 "0.25 0.125 0.01"
set -eu
TEACHER=${1:-shapes-sd3}; RATIO=${2:-0.2}; SETTINGS=${3:-0.25 0.125 0.01}
PY=${PYTHON:-python}; WORK=${WORK:-runs/rthres}
mkdir -p "$WORK"
echo "teacher:"  # the reference the drops are measured against, same items and seeds
[ -f "$WORK/$TEACHER-val/eval.json" ] || $PY -m hprune generate --model "$TEACHER" --split val --steps 8 --seed 0 \
    --device cpu --out "$WORK/$TEACHER-val" > /dev/null 2>&1
$PY -m hprune eval "$WORK/$TEACHER-val" 2>/dev/null | grep -E "^(semantic|quality) "
for r in $SETTINGS; do
  d="$WORK/$TEACHER-$RATIO-r$r"
  [ -f "$d-val/eval.json" ] && continue
  $PY -m hprune plan "results/analysis/$TEACHER" --method hpp --ratio "$RATIO" --r-thres "$r" --out "$d.plan.json" | head -n 1
  $PY -m hprune prune "$TEACHER" --plan "$d.plan.json" --out "$d" --overwrite > /dev/null
  $PY -m hprune generate --model "$d" --split val --steps 8 --seed 0 --device cpu --out "$d-val" > /dev/null 2>&1
  $PY -m hprune eval "$d-val" 2>/dev/null | grep -E "^(semantic|quality) "
done
# one JSON row per setting, with the degradation against the teacher on the same val items
$PY - "$WORK" "$TEACHER" "$RATIO" $SETTINGS <<'PYEOF'
import json, sys
from pathlib import Path
from hprune.ablate import degradation
work, teacher, ratio, *settings = sys.argv[1:]
work = Path(work)
ref = json.loads((work / f"{teacher}-val" / "eval.json").read_text())
rows = [{"teacher": teacher, "r_thres": None, "ratio_reached": 0.0, "semantic": ref["semantic"], "quality": ref["quality"]}]
for r in settings:
    run = json.loads((work / f"{teacher}-{ratio}-r{r}-val" / "eval.json").read_text())
    plan = json.loads((work / f"{teacher}-{ratio}-r{r}.plan.json").read_text())
    drop = degradation(ref, run)
    rows.append({"teacher": teacher, "r_thres": float(r), "units": plan["units"], "ratio_reached": plan["ratio_reached"],
                 "semantic": run["semantic"], "quality": run["quality"], "degradation": drop})
    print(f"r_thres {r}: {100 * plan['ratio_reached']:.1f}% removed, semantic {run['semantic']:.3f}, "
          f"quality {run['quality']:.3f}, degradation {100 * drop:.1f}%")
out = Path("results") / f"rthres-val-{teacher}-{ratio}.json"
out.write_text(json.dumps(rows, indent=1) + "\n")
print(f"wrote {out}")
PYEOF
