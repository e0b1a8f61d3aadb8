#!/usr/bin/env bash
# The ablation tables on one GPU, in one device call: both shapes teachers,
# every (method, ratio) row as its own process on the same GPU.
#   run(command="bash scripts/ablate_device.sh 1000 450", carry=[".whl"])
# args: distillation steps per row, wall-clock seconds allowed for training rows;
# env BATCH, PER_CATEGORY, DATA_SIZE, JOBS override the per-row settings; QUANT adds 4-bit twin rows;
# RTHRES, RTHRES_STEPS, SG_SCALE, SG_GRANULARITY, FEAT_WEIGHT go to `hprune ablate --r-thres / --r-thres-steps /
# --sg-scale / --sg-granularity / --feat-weight`.
# A side experiment on top of a finished table: TAG names it (its own work folders and result files, which
# start from the table's teacher scores, training renders and r_thres choice), TEACHERS, METHODS, RATIOS pick rows,
# ANALYSIS=NAME takes the plans from results/analysis/<teacher>-NAME (e.g. a `--norm-mode mean` profile).
set -u
STEPS=${1:-1000}
LIMIT=${2:-450}
# 4-bit twin rows: bnb-nf4 needs the bitsandbytes wheel carried in .whl-quant (carry just that file,
# 3.5 MB); w4fp8 needs nothing beyond torch's Triton.
. scripts/device_site.sh diffusers ${QUANT:+quant} || exit 1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
TEACHERS=${TEACHERS:-shapes-sd3 shapes-flux}
SUFFIX=${TAG:+-$TAG}
LOG="$OUT/ablation_log$SUFFIX.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOG"
for teacher in $TEACHERS; do
  run_dir="results/analysis/$teacher${ANALYSIS:+-$ANALYSIS}"
  [ -f "$run_dir/units.json" ] || { echo "no analysis $run_dir, skipped" | tee -a "$LOG"; continue; }
  work="/tmp/ablate/$teacher$SUFFIX"
  if [ -n "${TAG:-}" ] && [ -d "/tmp/ablate/$teacher" ]; then
    mkdir -p "$work" && cp /tmp/ablate/$teacher/{teacher*.json,rthres-*.json,distill_data.safetensors} "$work/" 2>/dev/null
  fi
  timeout "$LIMIT" python3 -m hprune ablate --teacher "$teacher" --run-dir "$run_dir" \
      --out "$work" --results "$OUT/ablation-$teacher$SUFFIX.json" \
      ${METHODS:+--methods "$METHODS"} ${RATIOS:+--ratios "$RATIOS"} \
      --steps "$STEPS" --batch-size "${BATCH:-64}" --lr 1e-4 --per-category "${PER_CATEGORY:-16}" --data-size "${DATA_SIZE:-4096}" --jobs "${JOBS:-6}" ${QUANT:+--quant "$QUANT"} \
      ${RTHRES:+--r-thres "$RTHRES"} ${RTHRES_STEPS:+--r-thres-steps "$RTHRES_STEPS"} ${SG_SCALE:+--sg-scale "$SG_SCALE"} ${SG_GRANULARITY:+--sg-granularity "$SG_GRANULARITY"} ${FEAT_WEIGHT:+--feat-weight "$FEAT_WEIGHT"} \
      > "/tmp/ablate-$teacher$SUFFIX.log" 2>&1 &
done
wait
for teacher in $TEACHERS; do
  [ -f "/tmp/ablate-$teacher$SUFFIX.log" ] && grep -v "it/s\]" "/tmp/ablate-$teacher$SUFFIX.log" | tail -30 >> "$LOG"
done
# rows that finished, even if the call ran out of time
(cd /tmp/ablate 2>/dev/null && tar czf "$OUT/ablation_rows$SUFFIX.tgz" *$SUFFIX/*.json *$SUFFIX/*.png *$SUFFIX/samples.txt \
    *$SUFFIX/*/plan.json *$SUFFIX/*/student/loss.csv *$SUFFIX/*/student/training_summary.json 2>/dev/null)
cat "$LOG"
