#!/bin/bash
# Contribution analysis of both shapes teachers on one GPU (issue 6).
#
# Device call (repo root, carry [".whl"]):  bash scripts/analysis_device.sh
# Everything comes back as $OUT/analysis.tgz (+ log.txt). Then, here:
#   tar xzf <files_at>/analysis.tgz -C results/analysis
#   bash scripts/analysis_make_plans.sh
# Single-unit analyses run to the end; the pair analyses get PAIR_SECONDS each
# and are resumable, so a cut one keeps every finished pair.
set -o pipefail
. scripts/device_site.sh diffusers || exit 1
OUT=${OUT:-/tmp/out}
RUNS=/tmp/analysis
mkdir -p "$OUT" "$RUNS"
log() { tee -a "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | log
nproc | sed 's/^/cpu cores: /' | log
for teacher in ${TEACHERS:-shapes-sd3 shapes-flux}; do
  echo "== $teacher: single units" | log
  python3 -m hprune profile "$teacher" --metric shapes --split calib --n-prompts 64 \
    --out "$RUNS/$teacher" --no-progress 2>&1 | grep -v -i warn | tail -n 5 | log
done
for teacher in ${TEACHERS:-shapes-sd3 shapes-flux}; do
  echo "== $teacher: pairs (at most ${PAIR_SECONDS:-100} s)" | log
  timeout "${PAIR_SECONDS:-100}" python3 -m hprune profile "$teacher" --metric shapes --split calib --n-prompts 64 \
    --pairs --out "$RUNS/$teacher" --no-progress 2>&1 | grep -v -i warn | tail -n 3 | log
  wc -l "$RUNS/$teacher/contribution.jsonl" | log
done
tar czf "$OUT/analysis.tgz" -C "$RUNS" .
