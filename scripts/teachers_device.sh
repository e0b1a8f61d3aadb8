#!/usr/bin/env bash
# Continue both shipped teachers side by side on one GPU for longer than one
# 10-minute device call: the trainings run in their own process session
# (setsid), later calls wait on them, and each call returns the latest EMA
# snapshots (taken every --eval-every steps) so a lost machine loses little.
#   run(command="bash scripts/teachers_device.sh start 24", carry=[".whl"])   # launch, wait ~9 min
#   run(command="bash scripts/teachers_device.sh wait")                       # wait ~9.5 min more
#   run(command="bash scripts/teachers_device.sh collect")                    # finish, score on test
# A stage lost with its machine restarts from the returned snapshot:
#   INIT_SD3=path INIT_FLUX=path bash scripts/teachers_device.sh start MINUTES
set -u
MODE=${1:?start MINUTES | wait | collect}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
RUNS=/tmp/teach
. scripts/device_site.sh diffusers || exit 1
begin=$(date +%s)

launch() {  # family, init folder, extra flags
  mkdir -p "$RUNS/$1"
  setsid nohup python3 -m hprune.toy.train --family "$1" --init "$2" --seed 3 --warmup 100 --steps 1000000 \
      --max-minutes "$MINUTES" --eval-every 1500 --workers 7 --out "$RUNS/$1" "${@:3}" \
      > "$RUNS/$1.log" 2>&1 < /dev/null &
}

finished() { grep -q '"done"' "$RUNS/sd3/train_log.jsonl" 2>/dev/null && grep -q '"done"' "$RUNS/flux/train_log.jsonl" 2>/dev/null; }

wait_until() {  # seconds since this call began, or both trainings done
  while ! finished && [ $(( $(date +%s) - begin )) -lt "$1" ]; do sleep 10; done
}

report() {
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for f in sd3 flux; do
    echo "== $f"; grep -E '"(val|step)"' "$RUNS/$f/train_log.jsonl" | grep '"val"' | tail -n 3 | cut -c1-400
    grep '"loss"' "$RUNS/$f/train_log.jsonl" | tail -n 1; grep -iE "error|Traceback" "$RUNS/$f.log" | tail -n 3
    [ -d "$RUNS/$f/snapshot" ] && tar czf "$OUT/snapshot-$f.tgz" -C "$RUNS/$f" snapshot
  done
}

case "$MODE" in
  start)
    MINUTES=${2:?minutes of training}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    launch sd3 "${INIT_SD3:-shapes-sd3}"
    launch flux "${INIT_FLUX:-shapes-flux}" --lr 8e-4
    wait_until 550; report ;;
  wait)
    wait_until 570; report ;;
  collect)
    wait_until 560; report
    finished || { echo "still training"; exit 0; }
    for f in sd3 flux; do
      tar czf "$OUT/pipeline-$f.tgz" -C "$RUNS/$f" pipeline train_log.jsonl
      python3 -m hprune generate --model "$RUNS/$f/pipeline" --split test --steps 8 --seed 0 --out "/tmp/test-$f" \
          > /dev/null 2>&1 && python3 -m hprune eval "/tmp/test-$f" 2>/dev/null | tee "$OUT/test-eval-$f.txt"
      grep '"done"' "$RUNS/$f/train_log.jsonl" | cut -c1-600
    done ;;
esac
