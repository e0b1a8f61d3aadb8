#!/bin/bash
# Issue 18 in one device call (10-minute limit): GPU tests, the kernel table, then the
# SD3.5 Large and FLUX.1 schnell tables, each stage under a deadline so that what finished
# comes back. Carry .whl (diffusers and torchao wheels).
#   bash scripts/bench_device_issue18.sh
# At most 8 files come back from a call: run.log, kernels.json and {sd35,flux}/{bench,extras}.json
# plus the two table.md files are exactly 8, so every log goes to run.log.
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/run.log"
start=$(date +%s)
left() { echo $(( ${1} - ($(date +%s) - start) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$log"
python3 -c 'import torch, triton, torchao, diffusers; print(torch.__version__, triton.__version__, torchao.__version__, diffusers.__version__)' 2>&1 | tail -1 | tee -a "$log"
timeout -k 5 $(left 80) python3 -m pytest -q -rA -p no:cacheprovider -m gpu tests/quant "tests/quant/test_quantize.py::test_backends_run_on_gpu_and_load_back[w4fp8]" 2>&1 | grep -E "^(PASSED|FAILED|ERROR)|passed|failed" | tee -a "$log"
timeout -k 5 $(left 190) python3 scripts/bench_quant_kernels.py --out "$OUT/kernels.json" >> "$log" 2>&1; tail -16 "$log"
common="--no-eager --cuda-graph --breakdown --fp8-original --quants w4fp8:0"
timeout -k 5 $(left 400) python3 scripts/bench_table.py --arch sd3.5-large --ratios 0.2,0.3 $common --out "$OUT/sd35" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log"
timeout -k 5 $(left 585) python3 scripts/bench_table.py --arch flux.1-schnell --ratios 0.3 $common --out "$OUT/flux" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log"
echo "elapsed $(( $(date +%s) - start )) s" | tee -a "$log"
