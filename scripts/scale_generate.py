"""Generation throughput at real size and the projected cost of the contribution analysis (issue 19, items 2-3).

    PYTHONPATH=src python scripts/scale_generate.py --arch sd3.5-large --compile --out results/scale.json
    PYTHONPATH=src python scripts/scale_generate.py --arch flux.1-schnell --tiny --resolution 64   # CPU dry run

Builds the transformer with random weights (hprune.bench.archs) and the family's VAE
(hprune.bench.vae), both bf16 on the GPU, and times what one analysis image costs: --steps (4)
denoising steps of the transformer at --resolution (1024: 4,096 image tokens; SD3 333 text tokens,
FLUX 512), one forward per step, then one VAE decode of the batch. Order of the work:

1. each --backends attention backend at batch 1, eager, one step at a time: the fastest is kept
   for every row after. FLUX's attention goes through diffusers' dispatcher
   (`transformer.set_attention_backend`); SD3's JointAttnProcessor2_0 calls
   F.scaled_dot_product_attention itself (diffusers 0.42), so the same SDPA kernel is pinned with
   torch.nn.attention.sdpa_kernel, which is what the dispatcher's `_native_*` backends do;
2. one `generate` row per --batches size, eager;
3. with --compile, every block compiled (hprune.compile_blocks_, one static graph per batch size),
   one row per batch size, largest first: it sets the projection when time runs short.

A row is skipped (one log line) when its estimate does not fit in what is left of --budget-s.
After every row the projections are rewritten from the rows so far:

- `profile`: the paper's analysis (appendix, "Contribution Analysis Overhead": SD3.5 Large Turbo
  and FLUX.1 schnell on HPSv2 prompts, 400 images per block, 80 per subcomponent; SD3.5 Large 38
  blocks and 190 subcomponents, FLUX 19 + 38 blocks and 19 x 5 + 38 x 3 = 209 subcomponents).
  Assumed, as the paper names none of them: 4 steps (both models' and hprune profile's default),
  no classifier-free guidance (both are guidance-distilled and sample at guidance 0; one forward
  per step), the pipelines' default 1024x1024, and one 400-image reference generation;
- `profile-fast`: `hprune profile --fast` (hprune.analysis.profile_fast: FastProfileConfig's prompts and
  steps, the pipeline's default size) over the same units; its metric is not counted, like the
  full analysis' HPSv2.

    PYTHONPATH=src python scripts/scale_generate.py --arch sd3.5-large --reproject   # no GPU: projections again

    gpu_hours = images x min over rows (steps x step_s + vae_decode_s) / batch / 3600

on G GPUs the variants are sharded (hprune.analysis.profile under accelerate launch): wall hours =
gpu_hours / G. Not counted: the metric (HPSv2, one CLIP ViT-H/14 forward at 224 px per image in
the full analysis), the prompts' text encoding (once per run), the scheduler's Euler update.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hprune.bench import measure
from hprune.bench.archs import Arch, build_transformer, get_arch, latent_tokens, make_inputs, set_timestep
from hprune.bench.vae import TINY as TINY_VAE
from hprune.bench.vae import build_vae, random_latents

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_distill import TINY, gemm_peak_tflops, save_row  # noqa: E402

BACKENDS = ("native", "_native_flash", "_native_cudnn", "_native_efficient")
# The SDPA kernel each diffusers backend pins (attention_dispatch._native_*); "native" lets torch pick.
SDPA = {"native": None, "_native_flash": "FLASH_ATTENTION", "_native_cudnn": "CUDNN_ATTENTION",
        "_native_efficient": "EFFICIENT_ATTENTION", "_native_math": "MATH"}
ANALYSIS_STEPS = 4  # SD3.5 Large Turbo and FLUX.1 schnell sample in 4 steps, guidance-free
PAPER_ANALYSIS = {  # appendix, "Contribution Analysis Overhead"
    "sd3.5-large": dict(blocks=38, subcomponents=190, block_images=400, sub_images=80, a100_gpu_hours=12.6),
    "flux.1-schnell": dict(blocks=57, subcomponents=209, block_images=400, sub_images=80, a100_gpu_hours=27.1),
}
SHARDS = (1, 2, 8)


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="sd3.5-large", choices=sorted(PAPER_ANALYSIS))
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--steps", type=int, default=ANALYSIS_STEPS, help="denoising steps per image")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=sorted(SDPA))
    p.add_argument("--compile", action="store_true", help="also the rows with every block compiled")
    p.add_argument("--warmup", type=int, default=2, help="untimed sampling runs per row (compilation)")
    p.add_argument("--repeats", type=int, default=3, help="timed sampling runs per row (median)")
    p.add_argument("--budget-s", type=float, default=540, help="start no row that would end after this")
    p.add_argument("--text-tokens", type=int, help="default: the pipeline's (SD3 333, FLUX 512)")
    p.add_argument("--tiny", action="store_true", help="tiny widths, CPU allowed: a dry run of this script")
    p.add_argument("--out", default="results/scale.json")
    p.add_argument("--reproject", action="store_true",
                   help="no GPU: rewrite --arch's projection rows in --out from its generate rows there "
                        "(after a change of the analyses' image counts)")
    args = p.parse_args()
    if args.resolution % 16 or min(args.batches) < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--resolution must be a multiple of 16; --batches, --steps and --repeats at least 1")
    return args


def log(*parts) -> None:
    print(*parts, flush=True)


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, estimate_s: float, what: str) -> bool:
        if estimate_s <= self.left():
            return True
        log(f"skipped, out of time: {what} (needs ~{estimate_s:.0f} s, {max(self.left(), 0):.0f} s left)")
        return False


@dataclass
class Setup:
    """What every row of one architecture shares."""

    arch: Arch
    model: torch.nn.Module
    vae: torch.nn.Module
    device: torch.device
    args: argparse.Namespace
    budget: Budget
    backend: str = "native"
    sweep: dict = field(default_factory=dict)  # backend -> step seconds at batch 1, eager (or the error)
    flops: float = 0.0  # one transformer step at batch 1
    gemm_peak: float | None = None
    decode: dict = field(default_factory=dict)  # batch -> (seconds, peak GiB)
    compile_s: float = 120.0  # allowance for one batch size's compilation until one is measured
    rows: list = field(default_factory=list)
    variants: dict = field(default_factory=dict)  # the units `hprune profile --fast` removes


# ----------------------------------------------------------------- timing


def use_backend(model, name: str) -> None:
    """Every attention of `model` on diffusers' backend `name` (set once: diffusers warns at each call)."""
    if getattr(model, "_scale_backend", None) != name:
        model.set_attention_backend(name)
        model._scale_backend = name


@contextlib.contextmanager
def pinned(name: str):
    """The SDPA kernel of diffusers' backend `name`, for attention that bypasses the dispatcher
    (module docstring); "native" pins nothing."""
    if SDPA[name] is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(getattr(SDPBackend, SDPA[name])):
        yield


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def warm(fn, device, n: int) -> float:
    """Seconds `n` untimed calls took (the first compiled call compiles)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            fn()
    sync(device)
    return time.perf_counter() - start


def median_s(fn, device, repeats: int) -> float:
    """Median seconds of `fn()`: CUDA events on the GPU (hprune.bench.measure's protocol), wall time on a CPU."""
    if device.type == "cuda":
        return measure.time_step_ms(fn, {}, warmup=0, repeats=repeats) / 1000  # calls fn(**{})
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / measure.GIB if device.type == "cuda" else None


def sampler(s: Setup, kwargs: dict):
    """One sampling run: --steps transformer forwards on the batch at decreasing timesteps."""
    timesteps = [1.0 - i / s.args.steps for i in range(s.args.steps)]

    def run():
        for t in timesteps:
            set_timestep(s.arch, kwargs, t)
            s.model(**kwargs)
    return run


def text_tokens(s: Setup) -> int:
    return s.args.text_tokens or (8 if s.args.tiny else s.arch.text_tokens)


def inputs(s: Setup, batch: int) -> dict:
    return make_inputs(s.arch, s.model, s.args.resolution, batch, text_tokens(s))


# ----------------------------------------------------------------- the measurements


def sweep_backends(s: Setup) -> None:
    """Time one eager step at batch 1 per backend; keep the fastest in `s.backend`."""
    kwargs = inputs(s, 1)
    step = lambda: s.model(**kwargs)  # noqa: E731
    for name in s.args.backends:
        timed = [v for v in s.sweep.values() if isinstance(v, float)]
        if timed and not s.budget.allows(10 * min(timed) + 5, f"attention backend {name}"):
            break  # the first backend that runs is always timed: the rows need one
        try:
            use_backend(s.model, name)
            with pinned(name):
                warm(step, s.device, 2)
                s.sweep[name] = round(median_s(step, s.device, max(5, s.args.repeats)), 5)
        except Exception as err:  # a backend this GPU or torch build lacks: say so, try the next
            s.sweep[name] = f"error: {type(err).__name__}: {str(err).splitlines()[0][:100]}"
        log(f"attention {name}: {s.sweep[name]}")
    timed = {k: v for k, v in s.sweep.items() if isinstance(v, float)}
    if not timed:
        raise SystemExit(f"no attention backend of {s.args.backends} ran on this machine; see the lines above.")
    s.backend = min(timed, key=timed.get)
    use_backend(s.model, s.backend)
    try:
        with pinned(s.backend):
            s.flops = step_flops(s.model, kwargs)
    except Exception as err:  # no FLOP count only costs the MFU column
        log(f"FLOPs not counted ({type(err).__name__}: {str(err)[:200]}); the rows' mfu stays empty")
    log(f"fastest attention backend: {s.backend}; {s.flops / 1e12:.2f} TFLOP per step at batch 1")


def step_flops(model, kwargs: dict) -> float:
    """FLOPs of one transformer forward, counted by torch's FlopCounterMode on an eager call."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(**kwargs)
    return float(counter.get_total_flops())


def decode(s: Setup, batch: int) -> tuple[float, float | None]:
    """VAE decode of `batch` latents (eager, the pipeline's dtype): seconds and peak GiB, measured once per batch."""
    if batch not in s.decode:
        latents = random_latents(s.vae, batch, s.args.resolution)
        fn = lambda: s.vae.decode(latents, return_dict=False)[0]  # noqa: E731
        reset_peak(s.device)
        warm(fn, s.device, 1)
        s.decode[batch] = (median_s(fn, s.device, s.args.repeats), peak_gib(s.device))
        del latents
    return s.decode[batch]


def generate_row(s: Setup, batch: int, compiled: bool) -> dict:
    """One `generate` row: --steps denoising steps of `batch` images, then their decode."""
    kwargs = inputs(s, batch)
    run = sampler(s, kwargs)
    reset_peak(s.device)
    with pinned(s.backend):
        warm_s = warm(run, s.device, s.args.warmup)
        run_s = median_s(run, s.device, s.args.repeats)
    peak = peak_gib(s.device)
    if compiled:  # the warm-up runs minus what they would take compiled: the compilation
        s.compile_s = max(warm_s - s.args.warmup * run_s, 0.0)
    decode_s, decode_peak = decode(s, batch)
    return _row(s, batch, compiled, run_s, decode_s, max(filter(None, (peak, decode_peak)), default=None))


def _row(s: Setup, batch: int, compiled: bool, run_s: float, decode_s: float, peak: float | None) -> dict:
    step_s = run_s / s.args.steps
    tflops = s.flops * batch / step_s / 1e12
    return {
        "arch": _label(s), "task": "generate", "gpus": 1, "strategy": "single", "batch": batch,
        "peak_gib": round(peak, 3) if peak is not None else None, "step_s": round(step_s, 5),
        "samples_per_s": round(batch / (run_s + decode_s), 4),
        "mfu": round(tflops / s.gemm_peak, 4) if s.gemm_peak and s.flops else None, "device": _device_name(s.device),
        "compiled": compiled, "attention_backend": s.backend,
        "denoising_steps": s.args.steps, "denoise_s": round(run_s, 5), "vae_decode_s": round(decode_s, 5),
        "image_s": round((run_s + decode_s) / batch, 5), "guidance": "none (one forward per step)",
        "resolution": s.args.resolution, "image_tokens": latent_tokens(s.model, s.args.resolution),
        "text_tokens": text_tokens(s), "tflops": round(tflops, 1), "step_tflop_batch1": round(s.flops / 1e12, 3),
        "gemm_peak_tflops": round(s.gemm_peak, 1) if s.gemm_peak else None,
        "compile_s": round(s.compile_s, 1) if compiled else None, "torch": torch.__version__,
        "attention_sweep": s.sweep,
    }


def estimate_s(s: Setup, batch: int, compiled: bool) -> float:
    """Seconds a row should take: its sampling runs at batch x the fastest batch-1 step, a margin
    for the decode, and the last measured compilation for a compiled row."""
    step_1 = min(v for v in s.sweep.values() if isinstance(v, float))
    runs = (s.args.warmup + s.args.repeats) * s.args.steps * step_1 * batch
    return 1.3 * runs + (s.compile_s if compiled else 0.0)


def try_row(s: Setup, batch: int, compiled: bool) -> None:
    what = f"batch {batch} {'compiled' if compiled else 'eager'}"
    if not s.budget.allows(estimate_s(s, batch, compiled), what):
        return
    try:
        row = generate_row(s, batch, compiled)
    except torch.OutOfMemoryError:
        log(f"FAILED, out of memory: {what}; pass --batches without {batch}")
        _free(s.device)
        return
    except Exception as err:  # one broken configuration must not lose the other rows
        log(f"FAILED: {what}: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
        _free(s.device)
        return
    s.rows.append(row)
    save_row(Path(s.args.out), row)
    print(json.dumps(row), flush=True)
    for projected in projection_rows(s):
        save_row(Path(s.args.out), projected)


def _free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------- the projections


def image_s(row: dict, steps: int) -> float:
    """Seconds per image at this row's speed for a sampling run of `steps` steps and its decode."""
    return (steps * row["step_s"] + row["vae_decode_s"]) / row["batch"]


def analysis_images(arch_name: str) -> dict:
    """Images each analysis generates: the paper's, and `hprune profile --fast`'s over the same units."""
    from hprune.analysis.profile_fast import FastProfileConfig
    from hprune.model.sampling import FEW_STEPS

    p, fast = PAPER_ANALYSIS[arch_name], FastProfileConfig()
    blocks, subs, per_block, per_sub = p["blocks"], p["subcomponents"], p["block_images"], p["sub_images"]
    full = dict(images=per_block * (1 + blocks) + per_sub * subs, steps=ANALYSIS_STEPS,
                text=f"{per_block} reference + {blocks} blocks x {per_block} + {subs} subcomponents x {per_sub}")
    quick = dict(images=fast.n_prompts * (1 + blocks + subs), steps=fast.proxy_steps(FEW_STEPS),
                 text=f"{fast.n_prompts} prompts x (1 reference + {blocks} blocks + {subs} subcomponents)")
    return {"profile": full, "profile-fast": quick}


def projection_rows(s: Setup) -> list[dict]:
    counts = analysis_images(s.arch.name)
    hours = {}
    rows = []
    for task, c in counts.items():
        best = min(s.rows, key=lambda r: image_s(r, c["steps"]))
        hours[task] = c["images"] * image_s(best, c["steps"]) / 3600
        for gpus in SHARDS:
            rows.append(_projection(s, task, c, best, hours[task], gpus))
    for row in rows:
        row["cost_ratio_vs_profile"] = round(hours[row["task"]] / hours["profile"], 4)
    return rows


def _projection(s: Setup, task: str, c: dict, best: dict, gpu_hours: float, gpus: int) -> dict:
    per_image = image_s(best, c["steps"])
    return {
        "arch": best["arch"], "task": task, "gpus": gpus, "strategy": "single" if gpus == 1 else "variants-sharded",
        "batch": None, "peak_gib": best["peak_gib"], "step_s": best["step_s"],
        "samples_per_s": round(gpus / per_image, 4), "mfu": best["mfu"], "device": best["device"],
        "projected_gpu_hours": round(gpu_hours, 4), "projected_wall_hours": round(gpu_hours / gpus, 4),
        "images": c["images"], "denoising_steps": c["steps"], "transformer_forwards": c["images"] * c["steps"],
        "formula": (f"gpu_hours = images x (steps x step_s + vae_decode_s) / batch / 3600 = {c['images']} x "
                    f"({c['steps']} x {best['step_s']} + {best['vae_decode_s']}) / {best['batch']} / 3600; images = "
                    f"{c['text']}; wall_hours = gpu_hours / gpus (variants sharded); no CFG; metric, text encoding "
                    f"and scheduler update not counted"),
        "from_row": {k: best[k] for k in ("batch", "compiled", "attention_backend", "resolution")},
        "paper_a100_gpu_hours": PAPER_ANALYSIS[s.arch.name]["a100_gpu_hours"] if task == "profile" else None,
        "hprune_fast_variants": s.variants,
    }


def hprune_variants(model) -> dict:
    """The units `hprune profile --fast` removes one at a time (hprune.analysis.profile.variants' default:
    SD3's last block, which surgery cannot remove whole, only by its subcomponents)."""
    from hprune.analysis.profile import variants

    units = [v[0] for v in variants(model)]
    return {"blocks": sum(u.is_block for u in units), "subcomponents": sum(not u.is_block for u in units)}


# ----------------------------------------------------------------- the run


def _label(s: Setup) -> str:
    return s.arch.name + (" (tiny)" if s.args.tiny else "")


def _device_name(device) -> str:
    return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"


def build(args, budget: Budget) -> Setup:
    arch = get_arch(args.arch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("the real architectures need a CUDA GPU; run with --tiny for a CPU dry run.")
    torch.manual_seed(0)
    # bf16 as the pipelines run it (hprune.bench.archs.make_inputs makes bf16 inputs), on a CPU dry run too
    model = build_transformer(arch, device=device, **(TINY[arch.family] if args.tiny else {}))
    vae = build_vae(arch.family, device=device, **(TINY_VAE if args.tiny else {}))
    return Setup(arch, model, vae, device, args, budget, gemm_peak=gemm_peak_tflops(device),
                 variants=hprune_variants(model))


def reproject(args) -> None:
    """The projections again from the measured generate rows of --out, without a GPU."""
    from types import SimpleNamespace

    rows = json.loads(Path(args.out).read_text())
    old = next(r for r in rows if r["arch"] == args.arch and r["task"] == "profile-fast")
    measured = [r for r in rows if r["arch"] == args.arch and r["task"] == "generate"]
    s = SimpleNamespace(arch=get_arch(args.arch), rows=measured, variants=old["hprune_fast_variants"])
    for row in projection_rows(s):
        save_row(Path(args.out), row)
        log(f"{row['task']} on {row['gpus']} GPU(s): {row['projected_gpu_hours']} GPU-hours, "
            f"{row['cost_ratio_vs_profile']} of the full analysis")


def main() -> None:
    args = parse()
    if args.reproject:
        return reproject(args)
    budget = Budget(args.budget_s)
    s = build(args, budget)
    log(f"{_label(s)} on {_device_name(s.device)}: {args.resolution}x{args.resolution}, {args.steps} steps, "
        f"batches {args.batches}, budget {args.budget_s:.0f} s")
    sweep_backends(s)
    for batch in args.batches:
        try_row(s, batch, compiled=False)
    if args.compile:
        from hprune.model.compile import compile_blocks_

        compile_blocks_(s.model, dynamic=False)  # one static graph per batch size, as a fixed-batch run has
        for batch in sorted(args.batches, reverse=True):
            try_row(s, batch, compiled=True)
    for row in projection_rows(s) if s.rows else []:
        if row["gpus"] == 1:
            log(f"{row['task']}: {row['projected_gpu_hours']} GPU-hours ({row['formula'].split(';')[0]}); "
                f"from the row {row['from_row']}")
    log(f"elapsed {args.budget_s - budget.left():.0f} s of {args.budget_s:.0f}")


if __name__ == "__main__":
    main()
