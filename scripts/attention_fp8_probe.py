"""Whether cuDNN's 8-bit (FP8 E4M3) fused attention forward is faster than the bf16 attention hprune
runs today at SD3.5 Large's and FLUX.1's shapes, and what it costs in accuracy. An experiment for issue
18, item 2 (an optional 8-bit attention behind a flag, speed and quality measured): nothing in hprune
calls it.

Shapes (1024x1024; the [B, H, N, D] layout diffusers passes to F.scaled_dot_product_attention, bf16,
no mask, not causal, scale 1/sqrt(D)): SD3.5 Large 38 heads x 4,429 tokens x 64, FLUX.1 24 x 4,608 x
128, batch 1 and 2. Candidates, forward only, median microseconds of triton.testing.do_bench:

  sdpa_cudnn_bf16, sdpa_flash_bf16  F.scaled_dot_product_attention under one SDPBackend (cuDNN is
                                    what hprune's attention picks);
  cudnn_fp8_e4m3                    cudnn-frontend's sdpa_fp8 graph, built once per shape: q, k, v
                                    E4M3 with per-tensor descales, scale_s 448, O in bf16 (else fp16,
                                    else E4M3 with its descale; o_dtype says which). "us" times only
                                    graph.execute; "quant_us" the eager per-tensor quantization of
                                    q, k, v (amax / 448), which a real path would fuse upstream.

Accuracy: rel_err = ||out - ref|| / ||ref|| (Frobenius) against softmax(q k^T / sqrt(D)) v in float64,
on q, k, v = randn (rel_err) and with q, k times sqrt(3), so that the logits' std is 3 (rel_err_peaky:
real attention is peakier). One JSON line per (arch, batch, candidate), printed and appended to --out;
a candidate that fails records "error" and the run goes on.

On the GPU machine (Python 3.12, torch with CUDA): the frontend wheel is carried in the git-ignored
.whl-cudnn and unpacked without its dependencies (the graph API needs neither the CuTe DSL nor TVM FFI):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/cudnnfe \\
        .whl-cudnn/nvidia_cudnn_frontend-1.32.0-cp312-*.whl
    PYTHONPATH=/tmp/cudnnfe python3 scripts/attention_fp8_probe.py --out $OUT/attention_fp8.jsonl

cuDNN itself is torch's (nvidia/cudnn/lib in site-packages). The frontend dlopens libcudnn from the
directories of LD_LIBRARY_PATH first, then the interpreter's site-packages, then the loader's path; a
torch installed elsewhere, or another libcudnn on LD_LIBRARY_PATH, would leave the two on different
copies. So the script puts the directory of the libcudnn torch has loaded first on LD_LIBRARY_PATH
before importing cudnn, and records both versions (cudnn_version, cudnn_frontend_backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {"sd3.5-large": (38, 4429, 64), "flux.1-schnell": (24, 4608, 128)}
E4M3_MAX = 448.0
PEAKY_GAIN = 3.0**0.5  # q.k / sqrt(D) of N(0, g^2) entries has std g^2
# O in bf16 is what the next projection wants; cuDNN's tests cover fp16 and FP8 O, so those follow.
O_DTYPES = (torch.bfloat16, torch.float16, torch.float8_e4m3fn)


def one_line(err: BaseException) -> str:
    lines = " | ".join(str(err).splitlines())
    return f"{type(err).__name__}: {lines}"[:600]


def median_us(fn) -> float:
    from triton.testing import do_bench

    return round(do_bench(fn, warmup=25, rep=100, return_mode="median") * 1000, 1)


def inputs(batch: int, h: int, n: int, d: int, qk_gain: float, seed: int) -> tuple:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(batch, h, n, d, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    return q * qk_gain, k * qk_gain, v


def reference(q, k, v, heads_per_chunk: int = 4) -> torch.Tensor:
    """float64 attention a few heads at a time: one head's N x N scores alone take 170 MB."""
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    for h0 in range(0, q.shape[1], heads_per_chunk):
        heads = slice(h0, h0 + heads_per_chunk)
        scores = q[:, heads].double() @ k[:, heads].double().transpose(-1, -2) * q.shape[-1] ** -0.5
        out[:, heads] = scores.softmax(-1) @ v[:, heads].double()
    return out


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def measure_sdpa(backend: SDPBackend, cases: list) -> dict:
    with sdpa_kernel(backend):
        errs = [rel_err(F.scaled_dot_product_attention(*x), ref) for x, ref in cases]
        q, k, v = cases[0][0]
        return {"us": median_us(lambda: F.scaled_dot_product_attention(q, k, v)),
                "rel_err": errs[0], "rel_err_peaky": errs[1]}


def torch_cudnn_dir() -> str | None:
    """The directory of the libcudnn this process has loaded (torch's), read from /proc/self/maps."""
    torch.backends.cudnn.version()  # makes sure torch has loaded it
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if os.path.basename(path).startswith("libcudnn.so"):
                return os.path.dirname(path)
    return None


def load_frontend():
    """cudnn-frontend on torch's libcudnn, with a handle on torch's current stream (do_bench's)."""
    libdir = torch_cudnn_dir()
    # cudnn's __init__ reads LD_LIBRARY_PATH itself (the loader read it at startup), so setting it here counts.
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    import cudnn

    handle = cudnn.create_handle()
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
    return cudnn, handle


def quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor E4M3: t * 448 / amax, and the descale amax / 448 the graph multiplies back."""
    amax = t.abs().amax().float().clamp(min=1e-12)
    fp8 = (t.float() * (E4M3_MAX / amax)).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return fp8, (amax / E4M3_MAX).reshape(1, 1, 1, 1)


def scalar(value) -> torch.Tensor:
    return torch.full((1, 1, 1, 1), float(value), dtype=torch.float32, device="cuda")


class Fp8Attention:
    """cudnn-frontend's sdpa_fp8 graph for one contiguous [B, H, N, D] shape, O in o_dtype."""

    def __init__(self, cudnn, handle, shape: tuple, o_dtype: torch.dtype):
        self.handle, self.shape, self.o_dtype = handle, shape, o_dtype
        dt = cudnn.data_type
        stride = (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
        graph = cudnn.pygraph(io_data_type=dt.FP8_E4M3, intermediate_data_type=dt.FLOAT, compute_data_type=dt.FLOAT)
        self.q, self.k, self.v = (graph.tensor(name=x, dim=shape, stride=stride, data_type=dt.FP8_E4M3) for x in "qkv")
        self.scalars = {name: graph.tensor(name=name, dim=(1, 1, 1, 1), stride=(1, 1, 1, 1), data_type=dt.FLOAT)
                        for name in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")}
        # Amax_S stays virtual: the frontend deprecates it ("448 for E4M3 without dropout" instead).
        self.o, _stats, _amax_s, self.amax_o = graph.sdpa_fp8(
            q=self.q, k=self.k, v=self.v, **self.scalars, generate_stats=False, attn_scale=shape[3] ** -0.5,
            name="sdpa_fp8")
        o_type = {torch.bfloat16: dt.BFLOAT16, torch.float16: dt.HALF, torch.float8_e4m3fn: dt.FP8_E4M3}[o_dtype]
        self.o.set_output(True).set_dim(shape).set_stride(stride).set_data_type(o_type)
        self.amax_o.set_output(True).set_dim((1, 1, 1, 1)).set_stride((1, 1, 1, 1)).set_data_type(dt.FLOAT)
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        self.graph = graph
        self.workspace = torch.empty(graph.get_workspace_size(), dtype=torch.uint8, device="cuda")

    def bind(self, q, k, v) -> tuple[dict, torch.Tensor, float]:
        """Quantized inputs, fresh outputs and constants as a variant pack; O's scale to divide back out."""
        (q8, dq), (k8, dk), (v8, dv) = quantize(q), quantize(k), quantize(v)
        # Each O row is a convex combination of V rows, so |O| <= amax(V) and V's scale (1 / descale_v)
        # cannot overflow an E4M3 O. Wider outputs take O unscaled, as cuDNN's tests do.
        scale_o = 1 / dv.item() if self.o_dtype == torch.float8_e4m3fn else 1.0
        out = torch.empty(self.shape, dtype=self.o_dtype, device="cuda")
        pack = {self.q: q8, self.k: k8, self.v: v8, self.o: out, self.amax_o: scalar(0),
                self.scalars["descale_q"]: dq, self.scalars["descale_k"]: dk, self.scalars["descale_v"]: dv,
                # softmax probabilities are in [0, 1]: the full E4M3 range
                self.scalars["scale_s"]: scalar(E4M3_MAX), self.scalars["descale_s"]: scalar(1 / E4M3_MAX),
                self.scalars["scale_o"]: scalar(scale_o)}
        return pack, out, scale_o

    def execute(self, pack: dict) -> None:
        self.graph.execute(pack, self.workspace, handle=self.handle)

    def measure(self, cases: list) -> dict:
        errs = []
        for x, ref in cases:
            pack, out, scale_o = self.bind(*x)
            self.execute(pack)
            errs.append(rel_err(out.double() / scale_o, ref))
        pack = self.bind(*cases[0][0])[0]
        return {"us": median_us(lambda: self.execute(pack)),
                "quant_us": median_us(lambda: [quantize(t) for t in cases[0][0]]),
                "rel_err": errs[0], "rel_err_peaky": errs[1]}


def measure_fp8(frontend, cases: list) -> dict:
    """The first O dtype whose graph builds and runs; the declined ones say why."""
    if isinstance(frontend, BaseException):
        raise frontend
    declined = []
    for o_dtype in O_DTYPES:
        try:
            row = Fp8Attention(*frontend, tuple(cases[0][0][0].shape), o_dtype).measure(cases)
        except Exception as err:  # an unsupported graph, recorded; the next O dtype may build
            declined.append(f"{o_dtype}: {one_line(err)}")
            continue
        return {**row, "o_dtype": str(o_dtype).removeprefix("torch."), "o_dtype_declined": declined or None}
    raise RuntimeError(" || ".join(declined))


def environment(frontend) -> dict:
    env = {"cudnn_version": torch.backends.cudnn.version(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name()}
    if not isinstance(frontend, BaseException):
        cudnn = frontend[0]
        env.update(cudnn_frontend=cudnn.__version__, cudnn_frontend_backend=cudnn.backend_version())
    return env


def draw_cases(batch: int, h: int, n: int, d: int) -> list:
    """[(q, k, v), float64 reference] for randn inputs (seed 0) and peaky logits (seed 1)."""
    drawn = (inputs(batch, h, n, d, 1.0, seed=0), inputs(batch, h, n, d, PEAKY_GAIN, seed=1))
    return [(x, reference(*x)) for x in drawn]


def write_row(out_path: str, row: dict) -> None:
    """Print one JSON line and append it to out_path."""
    print(json.dumps(row), flush=True)
    with open(out_path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def probe(arch: str, batch: int, candidates: dict, env: dict, out_path: str) -> None:
    h, n, d = SHAPES[arch]
    cases = draw_cases(batch, h, n, d)
    for name, measure in candidates.items():
        row = {"arch": arch, "batch": batch, "heads": h, "tokens": n, "head_dim": d, "candidate": name}
        try:
            row.update(measure(cases))
            row["tflops"] = round(4.0 * batch * h * n * n * d / (row["us"] * 1e-6) / 1e12, 1)
        except Exception as err:  # one failing candidate must not cost the others' rows
            row["error"] = one_line(err)
        write_row(out_path, {**row, **env})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="attention_fp8.jsonl")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("attention_fp8_probe.py needs a CUDA GPU.")
    try:
        frontend = load_frontend()
    except Exception as err:  # recorded on every FP8 row; the bf16 rows still run
        frontend = err
    candidates = {"sdpa_cudnn_bf16": partial(measure_sdpa, SDPBackend.CUDNN_ATTENTION),
                  "sdpa_flash_bf16": partial(measure_sdpa, SDPBackend.FLASH_ATTENTION),
                  "cudnn_fp8_e4m3": partial(measure_fp8, frontend)}
    env = environment(frontend)
    for arch in SHAPES if args.arch == "all" else [args.arch]:
        for batch in args.batch:
            probe(arch, batch, candidates, env, args.out)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
