"""`hprune quantize`: 4-bit post-training weight quantization of a (pruned) transformer.

    hprune quantize runs/pruned --backend bnb-nf4 --out runs/pruned-nf4
    hprune quantize runs/pruned --backend w4fp8 --out runs/pruned-w4fp8

MODEL_DIR is a transformer, pipeline or run folder, pruned or distilled by
hprune or not; a pipeline in gives a pipeline out. The output folder holds
config.json, the quantized weights and hprune.json (the model's history, this
step's config and its quantized and kept layers); load it with hprune.load.
bnb-nf4 folders of unpruned or whole-block-pruned models also load with
diffusers' from_pretrained.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hprune.core.cuda import AUTO, DEVICE_HELP, resolve_device
from hprune.core.errors import HpruneError
from hprune.quant.names import BACKEND_NAMES, DEFAULT_BACKEND, KEEP_IO


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="transformer or pipeline folder (pruned or not)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKEND_NAMES, help="4-bit weight format")
    parser.add_argument("--group-size", type=int, default=None, help="inputs per weight scale (w4fp8: 0 = per row, its fast path and default, or 128; others: 128)")
    parser.add_argument("--skip", action="append", default=None, metavar="PATTERN",
                        help="glob of full module names to keep in 16 bit (repeatable), instead of the backend's default "
                             f"(w4fp8: {', '.join(KEEP_IO)}; others: none); --skip none quantizes every linear layer")
    parser.add_argument("--no-double-quant", action="store_true", help="bnb-nf4: keep the block scales in 32 bit")
    parser.add_argument("--max-size", type=int, default=None, metavar="PX",
                        help="SD3 only: keep the position embeddings of images up to PX pixels a side and drop the rest "
                             "(SD3.5 Large at 1024: 171 -> 19 MiB; same outputs up to PX, larger sizes refused)")
    parser.add_argument("--device", default=AUTO, type=resolve_device, help="where to quantize: " + DEVICE_HELP)
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")


def run(args) -> int:
    import torch

    from hprune.folders import Manifest, load, model_folder, pipeline_folder, save
    from hprune.core.atomic import check_out
    from hprune.quant.quantize import QuantConfig, quantize_, unmatched_patterns, weight_bytes

    config = QuantConfig(backend=args.backend, group_size=args.group_size, skip=_skip_patterns(args.skip),
                         double_quant=not args.no_double_quant)
    check_out(Path(args.out))
    from hprune.quant import get_backend

    get_backend(config.backend).check(device=args.device)  # before the model loads: no GPU, no package
    if Manifest.read(model_folder(args.model_dir)).steps("quantize"):
        raise HpruneError(f"{args.model_dir} is already quantized; quantize the 16-bit (pruned or distilled) model instead.")
    per_latent = _pixels_per_latent(args.model_dir, args.max_size) if args.max_size is not None else None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load(args.model_dir, torch_dtype=config.torch_compute_dtype, device=device)
    before = weight_bytes(model)
    if args.max_size is not None:
        from hprune.model.pos_embed import crop_pos_embed

        crop_pos_embed(model, args.max_size, per_latent)
    if args.skip is not None:
        for pattern in unmatched_patterns(model, config.skip):
            print(f"warning: --skip {pattern} matches no linear layer of this model; nothing kept for it", file=sys.stderr)
    result = quantize_(model, config)
    out = save(model, args.out, source=pipeline_folder(args.model_dir))
    print(f"quantized {len(result.quantized)} linear layers with {config.backend}; {_kept_summary(config, result, args.skip is None)}; "
          f"weights {before / 2**30:.2f} GiB -> {weight_bytes(model) / 2**30:.2f} GiB; saved to {out}")
    return 0


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
