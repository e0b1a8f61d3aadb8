#!/bin/bash
# `hprune run` with a GPU recipe in one device call; the run folder (without its model weights)
# comes back as one tarball, the log beside it. Carry .whl (the diffusers wheel).
#   MODEL=shapes-sd3 RATIO=0.2 RECIPE=shapes-full bash scripts/run_device.sh
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
. scripts/device_site.sh diffusers || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/run.log"
run=/tmp/run-${MODEL:-shapes-sd3}
start=$(date +%s)
python3 -m hprune run "${MODEL:-shapes-sd3}" --ratio "${RATIO:-0.2}" --recipe "${RECIPE:-shapes-full}" --out "$run" \
    --no-progress 2>&1 | grep -v "it/s\]" | tee -a "$OUT/run.log"
echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/run.log"
tar czf "$OUT/run.tgz" --exclude='*.safetensors' --exclude='checkpoints' -C /tmp "$(basename "$run")"
