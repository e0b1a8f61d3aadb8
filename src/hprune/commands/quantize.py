"""`hprune quantize`: 4-bit post-training weight quantization of a (pruned) transformer.

    hprune quantize runs/pruned --backend bnb-nf4 --out runs/pruned-nf4
    hprune quantize runs/pruned --backend w4fp8 --out runs/pruned-w4fp8

MODEL_DIR is a transformer, pipeline or run folder, pruned or distilled by
hprune or not; a pipeline in gives a pipeline out. The output folder holds
config.json, the quantized weights and hprune.json (the model's history, this
step's config and its quantized and kept layers); load it with hprune.load.
bnb-nf4 folders of unpruned or whole-block-pruned models also load with
diffusers' from_pretrained.

w4fp8 rounds by GPTQ when MODEL_DIR comes with its pipeline (a pipeline or run
folder): the model first draws 64 calibration prompts (the shapes train split,
or hprune's shipped prompts, or --calibration-prompts), and each layer's int4
codes are rounded against the inputs it saw. A bare transformer folder rounds
to nearest (said on stderr); --rounding picks either.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hprune.core.cuda import AUTO, DEVICE_HELP, resolve_device
from hprune.core.errors import HpruneError
from hprune.quant.names import BACKEND_NAMES, CALIBRATION_IMAGES, DEFAULT_BACKEND, KEEP_IO, ROUNDINGS


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="transformer or pipeline folder (pruned or not)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKEND_NAMES, help="4-bit weight format")
    parser.add_argument("--group-size", type=int, default=None, help="inputs per weight scale (w4fp8: 0 = per row, its fast path and default, or 128; others: 128)")
    parser.add_argument("--skip", action="append", default=None, metavar="PATTERN",
                        help="glob of full module names to keep in 16 bit (repeatable), instead of the backend's default "
                             f"(w4fp8: {', '.join(KEEP_IO)}; others: none); --skip none quantizes every linear layer")
    parser.add_argument("--rounding", choices=ROUNDINGS, default=None,
                        help="int4 rounding (w4fp8 per row): gptq, against calibration inputs drawn with the model's "
                             "pipeline (the default where MODEL_DIR has one), or nearest (the default otherwise)")
    parser.add_argument("--calibration-prompts", default=None, metavar="FILE",
                        help="GPTQ: prompts to draw, one a line (default: the shapes train split, or hprune's 64 shipped prompts)")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                        help="GPTQ: how many calibration images the model draws")
    parser.add_argument("--no-double-quant", action="store_true", help="bnb-nf4: keep the block scales in 32 bit")
    parser.add_argument("--max-size", type=int, default=None, metavar="PX",
                        help="SD3 only: keep the position embeddings of images up to PX pixels a side and drop the rest "
                             "(SD3.5 Large at 1024: 171 -> 19 MiB; same outputs up to PX, larger sizes refused)")
    parser.add_argument("--device", default=AUTO, type=resolve_device, help="where to quantize: " + DEVICE_HELP)
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")


def run(args) -> int:
    import torch

    from hprune.folders import Manifest, model_folder, pipeline_folder, save
    from hprune.core.atomic import check_out
    from hprune.quant.quantize import QuantConfig, quantize_, unmatched_patterns, weight_bytes

    rounding, rounding_note = _rounding(args)
    config = QuantConfig(backend=args.backend, group_size=args.group_size, skip=_skip_patterns(args.skip),
                         double_quant=not args.no_double_quant, rounding=rounding)
    check_out(Path(args.out))
    from hprune.quant import get_backend

    backend = get_backend(config.backend)
    backend.check(device=args.device)  # before the model loads: no GPU, no package
    if Manifest.read(model_folder(args.model_dir)).steps("quantize"):
        raise HpruneError(f"{args.model_dir} is already quantized; quantize the 16-bit (pruned or distilled) model instead.")
    per_latent = _pixels_per_latent(args.model_dir, args.max_size) if args.max_size is not None else None
    for note in (rounding_note, backend.caution):  # every check passed: the work starts
        if note:
            print(f"note: {note}", file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, calibration = _model_and_calibration(args, config, device)
    before = weight_bytes(model)
    if args.max_size is not None:
        from hprune.model.pos_embed import crop_pos_embed

        crop_pos_embed(model, args.max_size, per_latent)
    if args.skip is not None:
        for pattern in unmatched_patterns(model, config.skip):
            print(f"warning: --skip {pattern} matches no linear layer of this model; nothing kept for it", file=sys.stderr)
    result = quantize_(model, config, calibration=calibration)
    out = save(model, args.out, source=pipeline_folder(args.model_dir))
    rounding = f" (GPTQ rounding on {len(calibration.prompts)} calibration images)" if calibration else ""
    print(f"quantized {len(result.quantized)} linear layers with {config.backend}{rounding}; "
          f"{_kept_summary(config, result, args.skip is None)}; "
          f"weights {before / 2**30:.2f} GiB -> {weight_bytes(model) / 2**30:.2f} GiB; saved to {out}")
    return 0


def _rounding(args) -> tuple[str, str | None]:
    """--rounding, or its default: gptq for w4fp8 per row where MODEL_DIR has a pipeline to draw with;
    and a note, said once the checks passed, when the default falls back to nearest."""
    from hprune.folders import pipeline_folder

    if args.rounding is not None:
        if args.rounding == "gptq" and pipeline_folder(args.model_dir) is None:
            raise HpruneError(f"--rounding gptq draws calibration images with the model's pipeline, and {args.model_dir} "
                              "is a bare transformer folder; pass its pipeline or run folder, or --rounding nearest.")
        return args.rounding, None
    if args.backend != "w4fp8" or args.group_size not in (None, 0):
        return "nearest", None
    if pipeline_folder(args.model_dir) is None:
        return "nearest", (f"{args.model_dir} has no pipeline to draw calibration images with, so w4fp8 rounds to "
                           "nearest; pass the pipeline or run folder for GPTQ rounding (less error, same size and speed).")
    return "gptq", None


def _model_and_calibration(args, config, device):
    """The model to quantize and, for GPTQ, its Calibration (the model inside its own pipeline)."""
    from hprune.folders import load, load_pipeline
    from hprune.model.sampling import is_diffusers
    from hprune.quant.calibration import default_calibration
    from hprune.runs.prompts import read_prompts

    if config.rounding != "gptq":
        return load(args.model_dir, torch_dtype=config.torch_compute_dtype, device=device), None
    if args.calibration_images < 1:
        raise HpruneError(f"--calibration-images must be at least 1, got {args.calibration_images}.")
    pipe = load_pipeline(args.model_dir, torch_dtype=config.torch_compute_dtype, device=device)
    prompts = read_prompts(args.calibration_prompts) if args.calibration_prompts or is_diffusers(pipe) else None
    calibration = default_calibration(pipe, prompts, args.calibration_images)
    calibration.progress = True
    return pipe.transformer, calibration


def _skip_patterns(given: list[str] | None) -> tuple[str, ...] | None:
    """--skip's patterns; None (not given): the backend's default; `--skip none`: keep nothing."""
    if given is None:
        return None
    if "none" not in given:
        return tuple(given)
    if len(given) > 1:
        raise HpruneError("--skip none quantizes every linear layer and cannot be combined with patterns; "
                          "pass either --skip none or the patterns of the layers to keep.")
    return ()


def _kept_summary(config, result, default: bool) -> str:
    """Which layers stayed in 16 bit and why, for the one summary line."""
    from hprune.quant.quantize import matches_skip

    by_skip = [n for n in result.kept if matches_skip(n, config.skip)]
    empty = [n for n in result.kept if n not in by_skip]  # only w4fp8 refuses layers: those pruning left with no inputs
    parts = []
    if by_skip:
        why = f"{config.backend}'s default; --skip none quantizes them too" if default else "--skip"
        parts.append(f"kept in 16 bit: {_names(by_skip)} ({why})")
    if empty:
        parts.append(f"{len(empty)} layers left with no inputs by pruning kept as bias-only 16-bit layers")
    return "; ".join(parts) or "none kept in 16 bit"


def _names(names: list[str], shown: int = 6) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _pixels_per_latent(model_dir: str, max_size: int) -> int:
    """Image pixels per latent pixel for --max-size: 1 for a shapes teacher (pixel space, and it always
    draws its own size, so --max-size must cover it), the VAE's 2 ** (levels - 1) for a diffusers
    pipeline, SD3's 8 for a bare transformer folder."""
    import json

    from hprune.folders import pipeline_folder

    source = pipeline_folder(model_dir)
    if source is None:
        return 8
    index = json.loads((Path(source) / "model_index.json").read_text())
    if "image_size" in index:  # hprune.toy pipelines: pixel space, one fixed size
        if max_size < index["image_size"]:
            raise HpruneError(f"--max-size {max_size} is below the {index['image_size']} pixels this pipeline always "
                              f"draws; pass --max-size {index['image_size']} or more.")
        return 1
    vae = Path(source) / "vae" / "config.json"
    return 2 ** (len(json.loads(vae.read_text()).get("block_out_channels", [0] * 4)) - 1) if vae.is_file() else 8
