#!/bin/bash
# One device call: install the carried wheels, then run what is asked.
#   bash scripts/device_run.sh kernels        -> kernel check + timing
#   bash scripts/device_run.sh table ARGS...   -> scripts/bench_table.py ARGS
set -o pipefail
ls .whl-quant/*.whl > /dev/null 2>&1 || { echo "carry .whl-quant: the quantization wheels"; exit 1; }
. scripts/device_site.sh diffusers quant || exit 1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
what=$1; shift
case $what in
  kernels) python3 scripts/bench_quant_kernels.py 2>&1 | tee "$OUT/kernels.log" ;;
  table) python3 scripts/bench_table.py --out "$OUT" "$@" 2>&1 | tee "$OUT/table.log" ;;
  tests) python3 -m pytest -q -m gpu tests/quant/test_quantize.py tests/bench/test_bench.py tests/quant 2>&1 | tee "$OUT/gpu_tests.log" ;;
esac
