"""Which SDPA kernel the default path runs at SD3.5 Large's and FLUX.1's attention shapes, and how
fast each exact backend (and SageAttention's 8-bit kernel, when installed) is (issue 18, item 2).

    for a in sd3.5-large flux.1-schnell; do for b in 1 2; do
        PYTHONPATH=src python scripts/attention_probe.py --arch $a --batch $b --out attention.jsonl; done; done

One shape per process, so that "default" is what a fresh process picks (1024x1024: SD3.5 Large
38 heads x 4,429 tokens x 64; FLUX.1 24 x 4,608 x 128; bf16, the [B, H, N, D] layout diffusers
passes to F.scaled_dot_product_attention): the CUDA kernels one call runs under torch's default
backend choice, eager and inside torch.compile; the median time (triton.testing.do_bench) of the
default and of each backend alone, forward and forward+backward; and SageAttention 1's (8-bit
QK, Triton) time and error against float64 attention, when installed. Prints and appends one
JSON line. hprune's own choice (hprune.model.attention) is checked by tests/model/test_attention.py.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {"sd3.5-large": (38, 4429, 64), "flux.1-schnell": (24, 4608, 128)}
BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")


def kernels(fn) -> list[str]:
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sorted({e.name[:120] for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})


def timed(fn) -> float | None:
    from triton.testing import do_bench

    try:
        return round(do_bench(fn, warmup=25, rep=100) * 1000, 1)
    except RuntimeError as err:  # a backend that refuses the shape
        print("   refused:", str(err).splitlines()[0][:100])
        return None


def attention_flops(b, h, n, d) -> float:
    return 4.0 * b * h * n * n * d


def probe(arch: str, batch: int) -> dict:
    h, n, d = SHAPES[arch]
    q, k, v = (torch.randn(batch, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    sdpa = lambda: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    compiled = torch.compile(lambda a, b, c: F.scaled_dot_product_attention(a, b, c))
    row = {"arch": arch, "batch": batch, "heads": h, "tokens": n, "head_dim": d,
           "default_kernels_eager": kernels(sdpa), "default_kernels_compiled": kernels(lambda: compiled(q, k, v)),
           "us": {"default": timed(sdpa), "default_compiled": timed(lambda: compiled(q, k, v))}}
    for name in BACKENDS:
        with sdpa_kernel(getattr(SDPBackend, name)):
            row["us"][name.lower()] = timed(sdpa)
    row["tflops"] = {key: round(attention_flops(batch, h, n, d) / (us * 1e-6) / 1e12, 1) for key, us in row["us"].items() if us}
    row["fwd_bwd_us"] = backward_times(q, k, v)
    row["sage"] = sage(q, k, v)
    row.update(device=torch.cuda.get_device_name(), torch=torch.__version__)
    return row


def backward_times(q, k, v) -> dict:
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    grad = torch.randn_like(q)

    def step():
        F.scaled_dot_product_attention(q, k, v).backward(grad)

    out = {"default": timed(step)}
    for name in BACKENDS:
        with sdpa_kernel(getattr(SDPBackend, name)):
            out[name.lower()] = timed(step)
    return out


def sage(q, k, v) -> dict | None:
    try:
        from sageattention import sageattn
    except ImportError:
        return None
    ref = F.scaled_dot_product_attention(q[:, :4].double(), k[:, :4].double(), v[:, :4].double())
    out = sageattn(q, k, v, tensor_layout="HND", is_causal=False)
    flash = F.scaled_dot_product_attention(q, k, v)
    rel = lambda o: ((o[:, :4].double() - ref).norm() / ref.norm()).item()  # noqa: E731
    return {"us": timed(lambda: sageattn(q, k, v, tensor_layout="HND", is_causal=False)),
            "rel_err": rel(out), "rel_err_bf16_sdpa": rel(flash)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(SHAPES), required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", default="attention.jsonl")
    args = parser.parse_args()
    row = probe(args.arch, args.batch)
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
