#!/usr/bin/env bash
# One device call: contribution analysis of both shipped teachers (fresh run
# directories), the four methods' plans, then the ablation rows of both
# teachers side by side.  run(command="bash scripts/analysis_ablation_device.sh 600 240", carry=[".whl"])
set -u
STEPS=${1:-600}
LIMIT=${2:-240}
. scripts/device_site.sh diffusers || exit 1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; LOG="$OUT/log.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOG"
start=$(date +%s)
for t in shapes-sd3 shapes-flux; do
  python3 -m hprune profile "$t" --metric shapes --split calib --n-prompts 64 --out "/tmp/analysis/$t" --no-progress \
    > "/tmp/profile-$t.log" 2>&1 &
done
wait
for t in shapes-sd3 shapes-flux; do grep -v -i warn "/tmp/profile-$t.log" | tail -n 2 | tee -a "$LOG"; done
echo "analysis of both teachers side by side: $(( $(date +%s) - start )) s" | tee -a "$LOG"
for t in shapes-sd3 shapes-flux; do
  rm -rf "results/analysis/$t" && cp -r "/tmp/analysis/$t" "results/analysis/$t"
done
PYTHON=python3 bash scripts/analysis_make_plans.sh > /tmp/plans.log 2>&1 || tail -5 /tmp/plans.log | tee -a "$LOG"
tar czf "$OUT/analysis.tgz" -C results/analysis shapes-sd3 shapes-flux
bash scripts/ablate_device.sh "$STEPS" "$LIMIT" > /dev/null 2>&1
cat "$OUT/ablation_log.txt" >> "$LOG"; rm -f "$OUT/ablation_log.txt"
echo "total $(( $(date +%s) - start )) s" | tee -a "$LOG"
