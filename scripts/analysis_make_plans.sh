#!/bin/bash
# Plans of all four methods at 20%, 30% and 40% (matched sizes: each within 1 point
# of its ratio), and the figures, from the
# committed analyses (CPU, seconds):  bash scripts/analysis_make_plans.sh
set -e
cd "$(dirname "$0")/../results/analysis"  # the committed analyses
PY=${PYTHON:-python}
for teacher in shapes-sd3 shapes-flux; do
  [ -d "$teacher" ] || continue
  for method in hpp koala bkscore lastk; do
    for ratio in 0.2 0.3 0.4; do
      $PY -m hprune plan "$teacher" --method "$method" --ratio "$ratio" --out "$teacher/plan-$method-$ratio.json" | head -n 1
    done
  done
  mkdir -p "$teacher/report"
  $PY -m hprune report-analysis "$teacher" --out "$teacher/report" > "$teacher/report/summary.txt"
  cat "$teacher/report/summary.txt"
done
