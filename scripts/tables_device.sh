#!/usr/bin/env bash
# Issue 21's tables on one H200: both shapes teachers; 20%, 30% and 40%; every method of the paper's
# Tables 1 and 3 (lastk, koala, bkscore, hpp, hpp+pwp, hpp+pwp+sgdistill); each distilled row at
# distillation seeds 0, 1, 2 (hpp alone once); 512 test images (64 per category); each row's 4-bit
# twin on the default backend (w4fp8); matched sizes (every plan within 1 point of its ratio).
# Settings are the shapes-full recipe's (src/hprune/runs/recipes/shapes-full.toml, chosen on val):
# mean-norm analyses, r_thres 0.05, 400 steps at batch 128, lr 1e-4, feature weight 1e-4,
# 8,192 training renders. Per teacher it runs
#   hprune ablate --teacher T --run-dir results/analysis/T-mean --ratios 0.2,0.3,0.4 --seeds 0,1,2 \
#       --quant w4fp8 --r-thres 0.05 --steps 400 --batch-size 128 --lr 1e-4 --feat-weight 1e-4 \
#       --per-category 64 --data-size 8192 --jobs 7 --results ablation-T.json
# (shapes-flux has no committed mean-norm analysis: `hprune profile ... --norm-mode mean` makes it first).
#
# Measured 2026-11-30: both teachers, 0.2,0.3,0.4, 7 methods, 3 seeds (114 jobs, no twins), one teacher per
# H200 of an nvidia-h200-x2 with JOBS=14: 25 min (docs/results.md).
# And with twins: 0.2,0.3, 7 methods, 3 seeds, QUANT=w4fp8 (76 jobs), JOBS=19 per H200: 18 min; the
# pre-check `python3 scripts/check_w4fp8_shapes.py` (34 s) decides QUANT before `start`. Older estimate: the archived tables recorded 3,741 process-
# seconds (their 4-bit twins' gpu_seconds, which include the row's training and both evaluations) for
# 20 distilled 400-step rows with 12 row processes sharing one H100: ~16 s of GPU wall per row at that
# concurrency, evaluation (256 images x 2) about 5% of it. This run has 90 distilled (row, seed) jobs
# and 6 pruned-only ones, with 512 images x 2 each: ~90 x 16.5 s = 25 min, plus ~2 min for the flux
# mean-norm analysis, the teachers' scores and the training renders: ~27 min on an H100. These small
# models are launch-bound, so an H200 should gain little: plan on 23-27 min. That does not fit one
# 10-minute call: the work runs in its own process session on a private copy of the repository, and
# each call waits up to ~9.5 minutes and returns what is finished (every (row, seed) is its own
# resumable job). Three calls, each within idle_release_s of the last so the machine stays warm:
#   run(command="bash scripts/tables_device.sh start", carry=[".whl"])
#   run(command="bash scripts/tables_device.sh wait")        # again until tables_log.txt says DONE
# A subset that fits one ~9-minute call: issue 21's targets are on shapes-sd3 at 20% and 30% (30
# distilled jobs + 2, ~8.5 min at 14 processes):
#   TEACHERS=shapes-sd3 RATIOS=0.2,0.3 JOBS=14 bash scripts/tables_device.sh start
# env: TEACHERS, RATIOS, METHODS, SEEDS (0,1,2), JOBS (7 per teacher), STEPS (400), QUANT (w4fp8; none: no twin),
# FRESH (set: re-run every job, ignoring results/tables), ANALYSIS (mean; "" uses the identity-norm analyses results/analysis/T), RTHRES (0.05).
# Returned under $OUT: ablation-<teacher>.json (the table rows: mean over seeds, degradation_ci95,
# hpp+pwp's vs_best_baseline), tables.md (the markdown tables), tables_rows-<teacher>.tgz (per-job JSON,
# per-image .npz, plans, loss curves, training summaries, the first seed's sample strips), tables_log.txt.
# Call `start` once: it clears /tmp/tables, then copies in the finished (row, seed) jobs committed under
# results/tables/<teacher>/ (job JSON, per-image .npz, plan, loss, summary), which are not re-run. TABLES_WORK (a work folder other than /tmp/tables) lets two
# instances run side by side (one per GPU with CUDA_VISIBLE_DEVICES); WAIT_S (560) how long a call waits.
set -u
MODE=${1:?start | wait | body}
WORK=${TABLES_WORK:-/tmp/tables} REPO=${TABLES_WORK:-/tmp/tables}repo WAIT_S=${WAIT_S:-560}
begin=$(date +%s)
SUFFIX=${ANALYSIS-mean}

body() {
  cd "$REPO" || exit 1
  . scripts/device_site.sh diffusers $(case ${QUANT:-w4fp8} in torchao*) echo torchao ;; esac) || exit 1
  export OMP_NUM_THREADS=1  # 2 x JOBS row processes share 16 cores
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$WORK/log.txt"
  for teacher in ${TEACHERS:-shapes-sd3 shapes-flux}; do
    run_dir="results/analysis/$teacher${SUFFIX:+-$SUFFIX}"
    if [ ! -f "$run_dir/units.json" ]; then
      python3 -m hprune profile "$teacher" --metric shapes --split calib --n-prompts 64 --batch-size 64 \
          --norm-mode "$SUFFIX" --out "$run_dir" --no-progress >> "$WORK/profile-$teacher.log" 2>&1 \
          || { echo "profile of $teacher failed" >> "$WORK/log.txt"; continue; }
      echo "analysis $run_dir: $(( $(date +%s) - begin )) s" >> "$WORK/log.txt"
    fi
    python3 -m hprune ablate --teacher "$teacher" --run-dir "$run_dir" --out "$WORK/$teacher" \
        --results "$WORK/ablation-$teacher.json" --ratios "${RATIOS:-0.2,0.3,0.4}" \
        ${METHODS:+--methods "$METHODS"} --seeds "${SEEDS:-0,1,2}" $( [ "${QUANT:-w4fp8}" = none ] || echo --quant "${QUANT:-w4fp8}" ) \
        --r-thres "${RTHRES:-0.05}" --steps "${STEPS:-400}" --batch-size 128 --lr 1e-4 --feat-weight 1e-4 \
        --per-category 64 --data-size 8192 --jobs "${JOBS:-7}" > "$WORK/ablate-$teacher.log" 2>&1 \
        && echo "$teacher done: $(( $(date +%s) - begin )) s" >> "$WORK/log.txt" &
  done
  wait
  echo DONE >> "$WORK/log.txt"
}

report() {
  out=${OUT:-/tmp/out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  echo "finished (row, seed) jobs: $(ls "$WORK"/shapes-*/*-0.[0-9]*.json 2>/dev/null | grep -v rthres | wc -l)"
  cp "$WORK"/ablation-*.json "$out/" 2>/dev/null
  for log in "$WORK"/ablate-*.log; do  # the markdown tables `hprune ablate` printed
    [ -f "$log" ] && sed -n '/^| method /,$p' "$log" | grep -v "it/s\]" >> "$out/tables.md"
  done
  for dir in "$WORK"/shapes-*/; do  # one archive per teacher: each returned file must stay under 16 MB
    t=$(basename "$dir")
    (cd "$WORK" && tar czf "$out/tables_rows-$t.tgz" --exclude '*-s[0-9]*.png' "$t"/*.json "$t"/*.npz \
        "$t"/*.png "$t"/samples.txt "$t"/*/plan.json "$t"/*/student/loss.csv "$t"/*/student/training_summary.json \
        2>/dev/null; true)
  done
  cat "$WORK/log.txt" | tee "$out/tables_log.txt"
  for log in "$WORK"/ablate-*.log; do [ -f "$log" ] && grep -v "it/s\]" "$log" | tail -n 5; done
}

case "$MODE" in
  body) body ;;
  start)
    rm -rf "$WORK" "$REPO" && mkdir -p "$WORK" && cp -r "$PWD" "$REPO"
    for t in ${TEACHERS:-shapes-sd3 shapes-flux}; do  # (row, seed) jobs finished by earlier calls are not re-run
      [ -z "${FRESH:-}" ] && [ -d "results/tables/$t" ] && cp -r "results/tables/$t" "$WORK/$t"
    done
    setsid nohup bash "$REPO/scripts/tables_device.sh" body > "$WORK/body.log" 2>&1 < /dev/null &
    while [ $(( $(date +%s) - begin )) -lt $WAIT_S ] && ! grep -q DONE "$WORK/log.txt" 2>/dev/null; do sleep 10; done
    report ;;
  wait)
    while [ $(( $(date +%s) - begin )) -lt $(( WAIT_S + 10 )) ] && ! grep -q DONE "$WORK/log.txt" 2>/dev/null; do sleep 10; done
    report ;;
esac
