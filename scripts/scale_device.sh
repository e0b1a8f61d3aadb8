#!/bin/bash
# Issue 19, item 1: one distillation step of SD3.5 Large at 1024x1024 (4,096 image + 333 text
# tokens), the authors' 20% plan (blocks 25-28, 31-34) with PWP, random weights, every block
# compiled (a recompile fallback fails the row instead of running eager), per-GPU batch 1/2/4.
#   one GPU  (kind nvidia-h200):     bash scripts/scale_device.sh one
#   two GPUs (kind nvidia-h200-x2):  bash scripts/scale_device.sh two
#   both, for the scaling ratio (kind nvidia-h200-x2): bash scripts/scale_device.sh scaling
#   the whole student (no PWP), if time remains: bash scripts/scale_device.sh whole-one | whole-two
#   FLUX.1 schnell (4,096 + 512 tokens, a late-blocks 20% plan), one GPU: bash scripts/scale_device.sh flux-one
#   FLUX.1 schnell on one GPU and on two (DDP), batch 1 and 2 (kind nvidia-h200-x2): bash scripts/scale_device.sh flux-scaling
#   the shared prefix (hprune.distill.prefix) against the student running its frozen blocks, one GPU: bash scripts/scale_device.sh shared-prefix
#   the optimizer step beside the next teacher forward (hprune.distill.optimizer_stream) against after the backward, one GPU,
#   after its GPU test: bash scripts/scale_device.sh overlap
# Issue 19, items 2-3: generation throughput of SD3.5 Large and FLUX.1 schnell (1024x1024, 4 steps, batch
# 1-8, eager and compiled, the fastest attention backend, VAE decode) and the projected GPU-hours of the
# paper's contribution analysis and of `hprune profile --fast` (scripts/scale_generate.py), one GPU:
#   bash scripts/scale_device.sh generate   (GENERATE_ARCHS="flux.1-schnell" gives one arch the whole budget)
# Carry .whl (the diffusers wheel) and .whl-bnb (bitsandbytes, below: adds the --optimizer adamw8bit row).
# Rows (arch, task, gpus, strategy, batch, peak_gib, step_s, samples_per_s, mfu, device, and the
# details: GEMM peak, TFLOP/s per GPU, FLOPs per step) go to $OUT/scale.json; merge them into
# results/scale.json with the same key (scripts/scale_distill.py save_row). Each stage stops
# starting rows when less than a minute of its budget (BUDGET_S, default 570 s) is left.
# SCALE_DRY=1 runs the same stages at tiny width on CPU, uncompiled (a check of this script).
set -o pipefail
stage=${1:?which stage: one, shared-prefix, overlap, two, scaling, whole-one, whole-two, flux-one, flux-scaling or generate}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/scale-$stage.log"
start=$(date +%s)
budget=${BUDGET_S:-570}
left() { echo $(( budget - ($(date +%s) - start) )); }
compile=--compile
dry=
if [ -n "$SCALE_DRY" ]; then
  compile= dry="--tiny --resolution 64 --warmup 1 --steps 1"
  export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
else
  . scripts/device_site.sh diffusers || exit 1
  # bitsandbytes' wheel (42 MB) does not fit the 64 MiB a call carries; .whl-bnb holds it unpacked with
  # only the CUDA 13 and CPU libraries (4.5 MB; device_site.sh puts it on PYTHONPATH): cd .whl-bnb && unzip ../bitsandbytes-0.50.2-*.whl, then
  # delete libbitsandbytes_{cuda11*,cuda12*,rocm*,xpu*}.so
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$log"
fi
python3 -c 'import torch, diffusers, accelerate; print(torch.__version__, diffusers.__version__, accelerate.__version__)' | tee -a "$log"

one_gpu="python3 scripts/scale_distill.py"
two_gpus="python3 -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision bf16 --dynamo_backend no scripts/scale_distill.py"
row() {  # one configuration; a failure (out of memory, a recompile fallback) is logged, the next row still runs
  local t
  t=$(left)
  if [ "$t" -lt 60 ]; then echo "skipped, out of time: $*" | tee -a "$log"; return; fi
  echo "== $*" | tee -a "$log"
  timeout -k 15 "$t" $* $dry --out "$OUT/scale.json" > "$OUT/row.txt" 2>&1
  local rc=$?
  cat "$OUT/row.txt" >> "$log"
  grep -E '^\{|^skipped|^FAILED|^profile|^fastest' "$OUT/row.txt" | cut -c1-400
  if [ $rc -ne 0 ]; then echo "FAILED ($rc): $*" | tee -a "$log"; grep -E 'Error|error:' "$OUT/row.txt" | tail -2; fi
  rm -f "$OUT/row.txt"
}
common="--arch sd3.5-large --ratio 0.2 --resolution 1024 --warmup 3 --steps 5"
case $stage in
  one)
    for b in 4 2 1; do row $one_gpu $common --task distill-pwp --batch $b $compile; done
    row $one_gpu $common --task distill-pwp --batch 1 ;;  # eager, against the 0.209 s
  shared-prefix)  # the student's frozen first blocks replaying the teacher's (the default since hprune.distill.prefix), against running them, in one call
    row $one_gpu $common --task distill-pwp --batch 1 $compile
    row $one_gpu $common --task distill-pwp --batch 1 $compile --no-share-prefix
    row $one_gpu $common --task distill-pwp --batch 4 $compile ;;
  overlap)  # the GPU tests first (same loss and weights bit for bit; the lagged loss read), then rows with and without the side stream
    timeout -k 5 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/distill/test_optimizer_stream.py tests/distill/test_readback.py 2>&1 | tail -3 | tee -a "$log"
    row $one_gpu $common --task distill-pwp --batch 1 $compile
    row $one_gpu $common --task distill-pwp --batch 1 $compile --no-overlap-optimizer
    row $one_gpu $common --task distill-pwp --batch 1 $compile --no-share-prefix
    row $one_gpu $common --task distill-pwp --batch 2 $compile
    row $one_gpu $common --task distill-pwp --batch 4 $compile ;;
  two)
    for b in 4 2 1; do row $two_gpus $common --task distill-pwp --batch $b $compile --strategy ddp; done
    row $two_gpus $common --task distill-pwp --batch 2 $compile --strategy fsdp ;;
  whole-one)
    row $one_gpu $common --task distill-whole --batch 1 $compile --gradient-checkpointing
    python3 -c 'import bitsandbytes' 2> /dev/null \
      && row $one_gpu $common --task distill-whole --batch 1 $compile --gradient-checkpointing --optimizer adamw8bit ;;
  scaling)  # the two-GPU / one-GPU ratio from rows of one call: the same code on the same machine
    for b in 4 1; do
      row $one_gpu $common --task distill-pwp --batch $b $compile
      row $two_gpus $common --task distill-pwp --batch $b $compile --strategy ddp
    done ;;
  whole-two)  # batch 2 without recomputation first: it fits in 141 GB if anything does
    row $two_gpus $common --task distill-whole --batch 2 $compile --strategy fsdp
    row $two_gpus $common --task distill-whole --batch 2 $compile --strategy fsdp --gradient-checkpointing
    row $two_gpus $common --task distill-whole --batch 1 $compile --strategy fsdp ;;
  flux-one)
    flux="--arch flux.1-schnell --ratio 0.2 --resolution 1024 --warmup 3 --steps 5"
    for b in 1 2; do row $one_gpu $flux --task distill-pwp --batch $b $compile; done ;;
  flux-scaling)  # FLUX.1 schnell on one and two GPUs in one call (kind nvidia-h200-x2), the ratio of rows of one loop
    flux="--arch flux.1-schnell --ratio 0.2 --resolution 1024 --warmup 3 --steps 5"
    for b in 1 2; do
      row $one_gpu $flux --task distill-pwp --batch $b $compile
      row $two_gpus $flux --task distill-pwp --batch $b $compile --strategy ddp
    done ;;
  generate)  # one process per arch, each stopping its rows within its share of what is left
    [ -n "$SCALE_DRY" ] && dry="--tiny --resolution 64 --warmup 1 --repeats 1"
    archs=(${GENERATE_ARCHS:-sd3.5-large flux.1-schnell})
    for i in "${!archs[@]}"; do
      share=$(( ($(left) - 20) / (${#archs[@]} - i) ))
      row python3 scripts/scale_generate.py --arch "${archs[$i]}" $compile --budget-s $share
    done ;;
  *) echo "unknown stage $stage: one, shared-prefix, overlap, two, scaling, whole-one, whole-two, flux-one, flux-scaling or generate" >&2; exit 2 ;;
esac
echo "elapsed $(( $(date +%s) - start )) s" | tee -a "$log"
