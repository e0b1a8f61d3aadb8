"""SageAttention 2's Hopper kernel (INT8 QK^T, FP8 PV with float32 accumulation, k smoothed;
Zhang et al., "SageAttention2", 2025) against cuDNN's bf16 attention at SD3.5 Large's and FLUX.1's
shapes, speed and error. An experiment for issue 18, item 2: no SageAttention 2 wheel is reachable, so
it is built from source on the GPU machine (its own nvcc 13.0), sm90 kernels and fused quantization
only:

    # here: the source (git-ignored), from github.com/thu-ml/SageAttention at d1a57a5 (v2.2.0 + 38 commits;
    # the v2.2.0 tag's sm90_compile.py lets its fake implementation replace the real op, fixed in d970424)
    mkdir .sage-src && git --git-dir=<snapshot> archive HEAD csrc sageattention setup.py LICENSE | tar x -C .sage-src
    # in setup.py, build neither the sm80 nor the sm89 modules (the sm90 path imports them optionally)
    # there (carry .sage-src):
    (cd .sage-src && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 EXT_PARALLEL=2 python3 setup.py build_ext --inplace)
    PYTHONPATH=.sage-src python3 scripts/attention_sage_probe.py --out $OUT/attention_sage.jsonl

Timed as a model would call it: `sageattn_qk_int8_pv_fp8_cuda_sm90(q, k, v)` on the bf16 [B, H, N, D]
tensors, its quantization of q, k and v included. Candidates: sdpa_cudnn_bf16 (what hprune runs),
sage2_sm90_per_thread (the library's default INT8 granularity), sage2_sm90_per_warp, and
sage2_sm90_fp32_accum (pv_accum_dtype="fp32", which the sm90 kernel refuses: an error row). Errors as in attention_fp8_probe.py (float64
reference; rel_err on randn inputs, rel_err_peaky with logits of std 3).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from attention_fp8_probe import SHAPES, draw_cases, median_us, one_line, rel_err, write_row
from torch.nn.attention import SDPBackend, sdpa_kernel


def candidates() -> dict:
    from sageattention import sageattn_qk_int8_pv_fp8_cuda_sm90 as sage90

    def cudnn(q, k, v):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    return {
        "sdpa_cudnn_bf16": cudnn,
        "sage2_sm90_per_thread": lambda q, k, v: sage90(q, k, v, tensor_layout="HND", qk_quant_gran="per_thread"),
        "sage2_sm90_per_warp": lambda q, k, v: sage90(q, k, v, tensor_layout="HND", qk_quant_gran="per_warp"),
        "sage2_sm90_fp32_accum": lambda q, k, v: sage90(q, k, v, tensor_layout="HND", pv_accum_dtype="fp32"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--batches", default="1,2")
    args = parser.parse_args()
    env = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    fns = candidates()
    for arch, (h, n, d) in SHAPES.items():
        for batch in map(int, args.batches.split(",")):
            cases = draw_cases(batch, h, n, d)
            flops = 4 * batch * h * n * n * d
            for name, fn in fns.items():
                try:
                    errs = [rel_err(fn(*x), ref) for x, ref in cases]
                    q, k, v = cases[0][0]
                    us = median_us(lambda: fn(q, k, v))
                    row = {"us": us, "tflops": round(flops / us / 1e6, 1), "rel_err": errs[0], "rel_err_peaky": errs[1]}
                except Exception as err:  # a variant that does not run here: recorded
                    row = {"error": one_line(err)}
                write_row(args.out, {"arch": arch, "batch": batch, "shape": [batch, h, n, d], "candidate": name, **row, **env})
            del cases
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
