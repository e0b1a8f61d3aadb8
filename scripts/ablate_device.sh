#!/usr/bin/env bash
# The ablation tables on one GPU, in one device call: both shapes teachers,
# every (method, ratio) row as its own process on the same GPU.
#   run(command="bash scripts/ablate_device.sh 1000 450", carry=[".whl"])
# args: distillation steps per row, wall-clock seconds allowed for training rows;
# env BATCH, PER_CATEGORY, DATA_SIZE, JOBS override the per-row settings; QUANT adds 4-bit twin rows;
# RTHRES, SG_SCALE, FEAT_WEIGHT go to `hprune ablate --r-thres / --sg-scale / --feat-weight`.
set -u
STEPS=${1:-1000}
LIMIT=${2:-450}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/diffusers-*.whl || exit 1
# 4-bit twin rows: bnb-nf4 needs the bitsandbytes wheel carried in .whl-quant (carry just that file,
# 3.5 MB: the working tree may not pass 64 MiB); w4fp8 needs nothing beyond torch's Triton.
if [ -n "${QUANT:-}" ] && ls .whl-quant/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-quant/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/ablation_log.txt"
for teacher in shapes-sd3 shapes-flux; do
  [ -f "results/analysis/$teacher/units.json" ] || { echo "no analysis for $teacher, skipped" | tee -a "$OUT/ablation_log.txt"; continue; }
  timeout "$LIMIT" python3 -m hprune ablate --teacher "$teacher" --run-dir "results/analysis/$teacher" \
      --out "/tmp/ablate/$teacher" --results "$OUT/ablation-$teacher.json" \
      --steps "$STEPS" --batch-size "${BATCH:-64}" --lr 1e-4 --per-category "${PER_CATEGORY:-16}" --data-size "${DATA_SIZE:-4096}" --jobs "${JOBS:-6}" ${QUANT:+--quant "$QUANT"} \
      ${RTHRES:+--r-thres "$RTHRES"} ${SG_SCALE:+--sg-scale "$SG_SCALE"} ${FEAT_WEIGHT:+--feat-weight "$FEAT_WEIGHT"} \
      > "/tmp/ablate-$teacher.log" 2>&1 &
done
wait
for teacher in shapes-sd3 shapes-flux; do
  [ -f "/tmp/ablate-$teacher.log" ] && grep -v "it/s\]" "/tmp/ablate-$teacher.log" | tail -30 >> "$OUT/ablation_log.txt"
done
# rows that finished, even if the call ran out of time
(cd /tmp/ablate 2>/dev/null && tar czf "$OUT/ablation_rows.tgz" */*.json */*.png */samples.txt */*/plan.json */*/student/loss.csv */*/student/training_summary.json 2>/dev/null)
cat "$OUT/ablation_log.txt"
