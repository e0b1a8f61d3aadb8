#!/usr/bin/env bash
# HPP at one ratio with different block/subcomponent switch points (--r-thres), pruned only (no
# distillation), scored on the *validation* split: what the paper leaves open, chosen without the
# test split.  CPU, ~2.5 minutes a setting:  bash scripts/rthres_val.sh shapes-sd3 0.2 "0.25 0.125 0"
set -eu
TEACHER=${1:-shapes-sd3}; RATIO=${2:-0.2}; SETTINGS=${3:-0.25 0.125 0}
PY=${PYTHON:-python}; WORK=${WORK:-runs/rthres}
mkdir -p "$WORK"
for r in $SETTINGS; do
  d="$WORK/$TEACHER-$RATIO-r$r"
  $PY -m hprune plan "results/analysis/$TEACHER" --method hpp --ratio "$RATIO" --r-thres "$r" --out "$d.plan.json" | head -n 1
  $PY -m hprune prune "$TEACHER" --plan "$d.plan.json" --out "$d" --overwrite > /dev/null
  $PY -m hprune generate --model "$d" --split val --steps 8 --seed 0 --device cpu --out "$d-val" > /dev/null 2>&1
  $PY -m hprune eval "$d-val" 2>/dev/null | grep -E "^(semantic|quality) "
done
