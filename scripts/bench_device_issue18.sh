#!/bin/bash
# Issue 18 on one H200, in device calls of at most 10 minutes; each stage runs under a deadline
# so that what finished comes back. Carry .whl (diffusers, torchao and sageattention wheels).
#   bash scripts/bench_device_issue18.sh kernels   # GPU tests, attention probe, kernel table (~5 min)
#   bash scripts/bench_device_issue18.sh attention # attention GPU tests and probe only (~2 min)
#   bash scripts/bench_device_issue18.sh sd35      # SD3.5 Large 20% and 30% tables (~5 min)
#   bash scripts/bench_device_issue18.sh flux      # FLUX.1 schnell 30% table (~6 min)
#   bash scripts/bench_device_issue18.sh flux-fp8  # FLUX.1 schnell's FP8 original alone (358 s); FP8_ARCH=flux.1-dev for dev's
#   bash scripts/bench_device_issue18.sh batch4    # SD3.5 Large 20% and 30% at batch 4 (297 s)
#   bash scripts/bench_device_issue18.sh encoders  # whole-pipeline memory: T5-XXL in 8 and 4 bits beside the 4-bit models (321 s)
#   bash scripts/bench_device_issue18.sh gptq      # GPTQ rounding's time and memory at real size (scripts/gptq_cost.py)
#   bash scripts/bench_device_issue18.sh encoders+gptq
#   bash scripts/bench_device_issue18.sh flux-dev  # FLUX.1 dev 30% and 20% tables, w4fp8 + CUDA graph (no FP8 original)
#   bash scripts/bench_device_issue18.sh teacher-twins  # the shapes teachers' 4-bit twins on test (carry .whl-bnb too)
#   bash scripts/bench_device_issue18.sh backends  # bnb-nf4 and torchao int4 (tinygemm) rows, compiled + CUDA graph (carry .whl-bnb too)
#   BACKENDS_ARCH=flux.1-schnell BACKENDS_RATIOS=0.3 BACKENDS_QUANTS=bnb-nf4 bash scripts/bench_device_issue18.sh backends
#   bash scripts/bench_device_issue18.sh gptq+twins
# At most 8 files come back from a call, so every log goes to run.log.
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/run.log"
start=${START:-$(date +%s)}; export START=$start  # encoders+gptq: one deadline for both
left() { echo $(( ${1} - ($(date +%s) - start) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
if [ -d .whl-bnb/bitsandbytes ]; then export PYTHONPATH=$PYTHONPATH:$PWD/.whl-bnb; fi  # unpacked: see device_site.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee -a "$log"
python3 -c 'import torch, triton, torchao, diffusers; print(torch.__version__, triton.__version__, torchao.__version__, diffusers.__version__)' 2>&1 | tail -1 | tee -a "$log"
common="--no-eager --cuda-graph --breakdown --fp8-original --quants w4fp8:0"
probe_attention() {  # one process per shape: "default" is what a fresh process picks
  for arch in sd3.5-large flux.1-schnell; do for batch in 1 2; do
    timeout -k 5 $(left $1) python3 scripts/attention_probe.py --arch $arch --batch $batch --out "$OUT/attention.jsonl" 2>&1 | tail -2 >> "$log"
  done; done
}
case $1 in
  kernels)
    timeout -k 5 $(left 200) python3 -m pytest -q -rA -p no:cacheprovider -m gpu tests/quant tests/model/test_cuda_graph.py \
        tests/model/test_attention.py 2>&1 | grep -E "^(PASSED|FAILED|ERROR)|passed|failed|Error" | tee -a "$log"
    probe_attention 300
    timeout -k 5 $(left 560) python3 scripts/bench_quant_kernels.py --out "$OUT/kernels.json" >> "$log" 2>&1; tail -26 "$log" ;;
  attention)
    timeout -k 5 $(left 100) python3 -m pytest -q -rA -p no:cacheprovider -m gpu tests/model/test_attention.py 2>&1 \
        | grep -E "^(PASSED|FAILED|ERROR)|passed|failed|Error" | tee -a "$log"
    probe_attention 200 ;;
  sd35)
    timeout -k 5 $(left 570) python3 scripts/bench_table.py --arch sd3.5-large --ratios 0.2,0.3 $common --out "$OUT/sd35" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  flux)
    timeout -k 5 $(left 570) python3 scripts/bench_table.py --arch flux.1-schnell --ratios 0.3 $common --out "$OUT/flux" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  batch4)  # issue 18 item 6: batch 4 (SD3.5 Large 20% and 30%, with the FP8 original)
    timeout -k 5 $(left 570) python3 scripts/bench_table.py --arch sd3.5-large --ratios 0.2,0.3 --batch 4 $common --out "$OUT/sd35-b4" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  encoders)  # issue 18 item 6: peak memory with the text encoders resident (T5-XXL torchao-fp8 = 8 bits, w4fp8 = 4 bits)
    IFS=, read -ra jobs <<< "${GPTQ_JOBS:-sd3.5-large 0.2,flux.1-schnell 0.3}"  # "ARCH RATIO,ARCH RATIO"
    for job in "${jobs[@]}"; do set -- $job; for t5 in torchao-fp8 w4fp8; do
      timeout -k 5 $(left 570) python3 -m hprune bench --arch $1 --ratio $2 --quant w4fp8 --compile --cuda-graph \
          --text-encoders --t5-quant $t5 --out "$OUT/enc-$1-$t5" 2>&1 | grep -A3 "^|\|Error\|Traceback" | tee -a "$log"
    done; done
    # one file back instead of eight (a call returns at most 8): every run's rows, labelled by folder
    python3 -c 'import json, pathlib, sys; o = pathlib.Path(sys.argv[1]); print(json.dumps({p.parent.name: json.loads(p.read_text()) for p in sorted(o.glob("enc-*/bench.json"))}, indent=1))' "$OUT" > "$OUT/encoders.json" && rm -rf "$OUT"/enc-* ;;
  gptq)  # what GPTQ rounding costs at real size (random weights and inputs of the real shapes)
    IFS=, read -ra jobs <<< "${GPTQ_JOBS:-sd3.5-large 0.2,flux.1-schnell 0.3}"  # "ARCH RATIO,ARCH RATIO"
    for job in "${jobs[@]}"; do set -- $job
      timeout -k 5 $(left 580) python3 scripts/gptq_cost.py --arch $1 --ratio $2 --out "$OUT/gptq_cost.json" 2>&1 | tail -4 | tee -a "$log"
    done ;;
  encoders+gptq) bash "$0" encoders && bash "$0" gptq; exit ;;
  gptq+twins) bash "$0" gptq; bash "$0" teacher-twins; exit ;;
  flux-dev)  # item 6's FLUX.1 dev rows: 30% first, so a run cut short by the deadline still has it
    timeout -k 5 $(left 575) python3 scripts/bench_table.py --arch flux.1-dev --ratios 0.3,0.2 --quants w4fp8:0 --no-eager \
        --cuda-graph --out "$OUT/flux-dev" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  backends)  # item 6's other 4-bit backends: bnb-nf4 (the paper's) and torchao int4 (tinygemm layout: no mslk wheel needed)
    arch=${BACKENDS_ARCH:-sd3.5-large}
    timeout -k 5 $(left 575) python3 scripts/bench_table.py --arch $arch --ratios ${BACKENDS_RATIOS:-0.2,0.3} --no-eager --cuda-graph \
        --quants ${BACKENDS_QUANTS:-bnb-nf4,torchao-int4-tinygemm} --out "$OUT/backends-$arch" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  teacher-twins)  # resumable: each evaluation is written as it ends (per-image scores in the .npz beside it)
    # TWIN_BACKENDS other than the default go to their own file (teacher_twins_<teacher>-<backends>.json)
    backends=${TWIN_BACKENDS:-w4fp8,bnb-nf4}; suffix=$([ "$backends" = w4fp8,bnb-nf4 ] || echo "-${backends//,/+}")
    for teacher in ${TWIN_TEACHERS:-shapes-flux shapes-sd3}; do
      timeout -k 5 $(left 585) python3 scripts/teacher_twins.py --teacher $teacher --backends $backends \
          --out "$OUT/teacher_twins_$teacher$suffix.json" 2>&1 | grep -v Warning | tail -4 | tee -a "$log"
    done ;;
  encoders-only)  # the text encoders' memory alone (weights, peak while encoding one prompt); docs/benchmarks.md
    # adds it to the transformer rows measured before, as `hprune bench --text-encoders` does (with_encoders)
    timeout -k 5 $(left 300) python3 - > "$OUT/encoders.json" 2>> "$log" <<'PY'
import json, sys
from hprune.bench.archs import get_arch
from hprune.bench.text_encoders import encoder_memory
rows = {}
for name in ("sd3.5-large", "flux.1-schnell"):
    arch = get_arch(name)
    for t5 in (None, "torchao-fp8", "w4fp8"):
        rows[f"{name} t5={t5 or 'bf16'}"] = encoder_memory(arch.text_encoders, arch.text_tokens - (77 if arch.family == "sd3" else 0), t5)
        print(name, rows[f"{name} t5={t5 or 'bf16'}"], file=sys.stderr, flush=True)
print(json.dumps(rows, indent=1))
PY
    ;;
  flux-fp8)  # FP8_ARCH=flux.1-dev for dev's
    timeout -k 5 $(left 585) python3 scripts/bench_table.py --arch ${FP8_ARCH:-flux.1-schnell} --ratios "" --quants "" --no-eager --cuda-graph \
        --fp8-original --out "$OUT/flux-fp8" 2>&1 | grep "^|\|^#\|FAILED" | tee -a "$log" ;;
  *) echo "usage: $0 kernels|attention|sd35|flux|flux-fp8|flux-dev|batch4|encoders|gptq|encoders+gptq|teacher-twins|gptq+twins" >&2; exit 2 ;;
esac
echo "elapsed $(( $(date +%s) - start )) s" | tee -a "$log"
