#!/usr/bin/env bash
# One device call (2026-12-01): issue 18's test-split twins with the GPTQ default, the text encoders'
# memory beside them, then GPTQ's cost at real size with what time is left.
#   run(command="bash scripts/device_issue18_twins.sh", carry=[".whl"], timeout_s=595)
# 1. `FRESH=1 METHODS=hpp+pwp RATIOS=0.2,0.3 bash scripts/tables_device.sh start` (both teachers, three
#    seeds, w4fp8 twins) waits up to WAIT_S and returns its files (ablation-*.json, tables.md, tables_rows-*.tgz,
#    tables_log.txt);
# 2. meanwhile `bench_device_issue18.sh encoders-only` (memory only: unaffected by the twins' processes);
# 3. after 1 returns, `GPTQ_JOBS="sd3.5-large 0.2" bench_device_issue18.sh gptq` (its time is clean only if
#    tables_log.txt says DONE: the twins' processes otherwise still share the GPU).
# The wheels are installed once first: scripts that install them again under running imports break them.
set -u
export OUT=${OUT:-/tmp/out} START=$(date +%s)
. scripts/device_site.sh diffusers || exit 1
FRESH=1 METHODS=hpp+pwp RATIOS=0.2,0.3 WAIT_S=${WAIT_S:-420} bash scripts/tables_device.sh start > /tmp/twins_start.log 2>&1 &
tables=$!
bash scripts/bench_device_issue18.sh encoders-only
wait $tables
tail -n 30 /tmp/twins_start.log
GPTQ_JOBS="sd3.5-large 0.2" bash scripts/bench_device_issue18.sh gptq
