"""`hprune quantize`: 4-bit post-training weight quantization of a (pruned) transformer.

    hprune quantize runs/pruned --backend bnb-nf4 --out runs/pruned-nf4
    hprune quantize runs/pruned --backend w4fp8 --out runs/pruned-w4fp8

MODEL_DIR is a transformer folder or a pipeline folder (its transformer is
used), pruned by hprune or not. The output folder holds config.json, the
quantized weights and hprune_quant.json (config, quantized and kept layers,
versions, command). bnb-nf4 folders also load with diffusers' from_pretrained.
"""

from __future__ import annotations

import sys

import torch

from hprune.quant import backends
from hprune.quantize import DEFAULT_BACKEND, QuantConfig, quantize_, save_quantized, weight_bytes


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="transformer or pipeline folder (pruned or not)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(backends()), help=f"default {DEFAULT_BACKEND}")
    parser.add_argument("--group-size", type=int, default=128, help="inputs per weight scale (w4fp8: 128 or 0 = per row)")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN", help="glob of module names to keep in 16 bit (repeatable)")
    parser.add_argument("--no-double-quant", action="store_true", help="bnb-nf4: keep the block scales in 32 bit")
    parser.add_argument("--device", default=None, help="where to quantize (default: cuda when available)")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")


def run(args) -> int:
    from hprune.io import load_transformer, transformer_dir

    config = QuantConfig(backend=args.backend, group_size=args.group_size, skip=tuple(args.skip), double_quant=not args.no_double_quant)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_transformer(transformer_dir(args.model_dir), torch_dtype=config.torch_compute_dtype).to(device).eval()
    before = weight_bytes(model)
    result = quantize_(model, config)
    save_quantized(model, args.out, {"command": " ".join(sys.argv), "source": str(args.model_dir)})
    print(f"quantized {len(result.quantized)} linear layers with {config.backend} ({len(result.kept)} kept in 16 bit); "
          f"weights {before / 2**30:.2f} GiB -> {weight_bytes(model) / 2**30:.2f} GiB; saved to {args.out}")
    return 0
