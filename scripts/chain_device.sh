#!/usr/bin/env bash
# One GPU lease, several device calls: train both shapes teachers a stage
# further, re-run their contribution analysis and plans, then the ablation
# tables on the new teachers. The work runs in its own process session on a
# private copy of the repository (a later call re-sends the working tree);
# every call waits up to ~9.5 minutes and returns what is there so far.
#   run(command="bash scripts/chain_device.sh start MINUTES STEPS LIMIT", carry=[".whl"])
#   run(command="bash scripts/chain_device.sh wait")       # until /tmp/chain/DONE
# env TRAIN (families to train, default "sd3 flux"; "" trains none), SEED (default 5);
# BATCH, PER_CATEGORY, DATA_SIZE, JOBS, QUANT, RTHRES, RTHRES_STEPS, SG_SCALE, FEAT_WEIGHT go on to scripts/ablate_device.sh (QUANT needs
# the quantization wheels carried in .whl-quant); AFTER, commands run once the tables are done (side
# experiments: scripts/ablate_device.sh with TAG=..., see there), with OUT set to the returned folder.
set -u
MODE=${1:?start MINUTES STEPS LIMIT | wait | body}
CHAIN=/tmp/chain REPO=/tmp/chainrepo RUNS=/tmp/teach
begin=$(date +%s)

body() {  # minutes of training, distillation steps per row, seconds for the ablation
  cd "$REPO" || exit 1
  . scripts/device_site.sh diffusers || exit 1
  for f in ${TRAIN-sd3 flux}; do
    mkdir -p "$RUNS/$f"
    lr=$([ $f = flux ] && echo 8e-4 || echo 6e-4)
    python3 -m hprune.toy.train --family $f --init shapes-$f --seed "${SEED:-5}" --warmup 100 --steps 1000000 --lr "$lr" \
        --max-minutes "$1" --eval-every 1500 --workers 7 --out "$RUNS/$f" > "$RUNS/$f.log" 2>&1 &
  done
  wait
  for f in ${TRAIN-sd3 flux}; do
    [ -f "$RUNS/$f/pipeline/model_index.json" ] || { echo "training $f failed" >> "$CHAIN/log.txt"; exit 1; }
    tar czf "$CHAIN/pipeline-$f.tgz" -C "$RUNS/$f" pipeline train_log.jsonl
    rm -rf "src/hprune/toy/checkpoints/shapes-$f" && cp -r "$RUNS/$f/pipeline" "src/hprune/toy/checkpoints/shapes-$f"
  done
  echo "teachers trained: $(( $(date +%s) - begin )) s" > "$CHAIN/teach.txt"
  OUT=$CHAIN bash scripts/analysis_ablation_device.sh "$2" "$3" > "$CHAIN/inner.log" 2>&1
  echo "tables done: $(( $(date +%s) - begin )) s" >> "$CHAIN/teach.txt"
  [ -n "${AFTER:-}" ] && (export OUT=$CHAIN; eval "$AFTER") > "$CHAIN/after.log" 2>&1
  touch "$CHAIN/DONE"
}

report() {
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for f in sd3 flux; do
    grep '"val"' "$RUNS/$f/train_log.jsonl" 2>/dev/null | tail -n 1 | cut -c1-200
    grep '"done"' "$RUNS/$f/train_log.jsonl" 2>/dev/null | cut -c1-300
  done
  cat "$CHAIN/teach.txt" "$CHAIN/log.txt" 2>/dev/null | tail -n 40
  ls /tmp/ablate/*/ 2>/dev/null | grep -c json
  # one file per teacher pipeline: each returned file must stay under 16 MB
  tar czf "${OUT:-/tmp/out}/chain.tgz" -C "$CHAIN" --exclude DONE --exclude 'pipeline-*' . 2>/dev/null
  cp "$CHAIN"/pipeline-*.tgz "${OUT:-/tmp/out}/" 2>/dev/null
}

case "$MODE" in
  body) body "${@:2}" ;;
  start)
    rm -rf "$CHAIN" "$REPO" "$RUNS" && mkdir -p "$CHAIN" && cp -r "$PWD" "$REPO"
    setsid nohup bash "$REPO/scripts/chain_device.sh" body "${2:?minutes}" "${3:?steps}" "${4:?seconds}" \
        > "$CHAIN/body.log" 2>&1 < /dev/null &
    while [ $(( $(date +%s) - begin )) -lt 560 ] && [ ! -f "$CHAIN/DONE" ]; do sleep 10; done; report ;;
  wait)
    while [ $(( $(date +%s) - begin )) -lt 570 ] && [ ! -f "$CHAIN/DONE" ]; do sleep 10; done; report ;;
esac
