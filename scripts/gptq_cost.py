"""What GPTQ rounding costs at real size: time and peak memory of `quantize_(..., rounding="gptq")`
on a pruned SD3.5 Large / FLUX.1 transformer with random weights (one H200; issue 18).

    PYTHONPATH=src python scripts/gptq_cost.py --arch sd3.5-large --ratio 0.2 --out results/gptq_cost.json
    PYTHONPATH=src python scripts/gptq_cost.py --arch flux.1-schnell --ratio 0.3 --out results/gptq_cost.json
    PYTHONPATH=src python scripts/gptq_cost.py --arch sd3.5-large --tiny --device cpu   # CPU dry run

Weights do not change the cost, so the calibration pass feeds random inputs of the real shapes
(hprune.bench.archs.make_inputs at --resolution, --images images in batches of --batch, --steps
timesteps each) instead of drawing prompts with the pipeline: the same transformer forwards that
`hprune quantize` runs, without the text encoders and the VAE (whose cost is a few forwards of
their own, once per calibration pass). Reports: calibration passes (H is collected in rounds that
fit half the free GPU memory), seconds in calibration forwards, seconds rounding, total, the
peak GPU memory, and for comparison round-to-nearest's seconds. Appends one JSON row to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


class RandomCalibration:
    """quantize_'s calibration interface (run, describe) over random real-shape inputs."""

    def __init__(self, arch, model, resolution: int, images: int, batch: int, steps: int):
        from hprune.bench.archs import make_inputs

        self.arch, self.images, self.batch, self.steps = arch, images, batch, steps
        self.kwargs = make_inputs(arch, model, resolution, batch=batch)
        self.prompts, self.seconds = [""] * images, 0.0

    def run(self, model) -> None:
        from hprune.bench.archs import set_timestep

        t0 = time.time()
        for _ in range(0, self.images, self.batch):
            for i in range(self.steps):
                set_timestep(self.arch, self.kwargs, 1.0 - i / self.steps)
                model(**self.kwargs)
        _sync()
        self.seconds += time.time() - t0

    def describe(self) -> dict:
        return {"images": self.images, "steps": self.steps, "random_inputs": True}


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(arch_name: str, ratio: float, tiny: bool, device: str):
    from hprune.bench.archs import build_transformer, get_arch
    from hprune.bench.plans import late_blocks_plan, published_plan
    from hprune.prune.surgery import prune_

    arch = get_arch(arch_name)
    small = dict(num_layers=4, num_attention_heads=2, attention_head_dim=64) if tiny else {}
    if tiny and arch.family == "flux":
        small.update(num_single_layers=4, axes_dims_rope=(16, 24, 24))
    if tiny and arch.family == "sd3":
        small.update(caption_projection_dim=128)
    model = build_transformer(arch, device=device, **small)
    if ratio:
        prune_(model, late_blocks_plan(model, ratio) if tiny else published_plan(arch_name, model, ratio))
    return arch, model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="sd3.5-large")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a 4-block model: a CPU dry run of the script")
    ap.add_argument("--roundings", default="nearest,gptq", help="which to time, in one process each after the other")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from hprune.quant.quantize import QuantConfig, quantize_

    row = {"arch": args.arch, "ratio": args.ratio, "resolution": args.resolution, "images": args.images,
           "batch": args.batch, "steps": args.steps, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}
    for rounding in args.roundings.split(","):
        arch, model = build(args.arch, args.ratio, args.tiny, args.device)
        calibration = RandomCalibration(arch, model, args.resolution, args.images, args.batch, args.steps)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        with torch.inference_mode():
            quantize_(model, QuantConfig(backend="w4fp8", rounding=rounding), calibration=calibration)
        _sync()
        total = time.time() - t0
        from hprune.core.provenance import steps_of

        step = steps_of(model, "quantize")[-1]
        row[rounding] = {"seconds": round(total, 1), "calibration_s": round(calibration.seconds, 1),
                         "rounding_s": round(total - calibration.seconds, 1), "layers": len(step["quantized"]),
                         "passes": step.get("calibration", {}).get("passes", 0),
                         "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None}
        print(rounding, row[rounding], flush=True)
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps(row))
    if args.out:
        rows = json.loads(args.out.read_text()) if args.out.is_file() else []
        args.out.write_text(json.dumps(rows + [row], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
