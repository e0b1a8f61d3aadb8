"""The quantization names the CLI offers, declared once without importing torch.

`hprune quantize --help` and `hprune bench --help` build their choices from
here; `hprune.quant.backends()` (which imports the backends, and torch) must
list exactly BACKEND_NAMES (tests/test_cli.py checks it).
"""

from __future__ import annotations

BACKEND_NAMES = ("bnb-nf4", "torchao-fp8", "torchao-int4", "torchao-int4-tinygemm", "w4fp8")
# 4-bit storage on FP8 tensor cores (issue 18; docs/benchmarks.md, H200 section). Its GEMMs need an
# FP8 GPU (compute capability 8.9+: Ada, Hopper); elsewhere pick torchao-int4 or bnb-nf4.
DEFAULT_BACKEND = "w4fp8"
# Linears each backend keeps in 16 bit when QuantConfig.skip is None (the default; `hprune quantize
# --skip none` quantizes them too). w4fp8 keeps the transformer's input embedders and its final output
# projection: about 0.1% of SD3.5 Large's and FLUX.1's weights (10-13M parameters, 15-19 MiB more than
# in 4 bits), and on the shapes students' val split they carried most of its quality cost
# (docs/benchmarks.md, quality section).
# Full module names, matched as fnmatch patterns: a block's own proj_out (FLUX's single blocks) is not kept.
KEEP_IO = ("proj_out", "x_embedder", "context_embedder")
DEFAULT_SKIP = {"w4fp8": KEEP_IO}
BF16 = "bf16"  # `hprune bench --quant`: no quantization, the bf16 weights
ROUNDINGS = ("gptq", "nearest")  # hprune.quant.quantize.QuantConfig.rounding
# What `hprune quantize`, `hprune run` and `hprune ablate` round with where they have the model's
# pipeline to draw calibration images with (other backends, and w4fp8 without a pipeline: nearest).
# Chosen on the shapes students' val split (docs/benchmarks.md, quality section).
DEFAULT_ROUNDING = {"w4fp8": "gptq"}
CALIBRATION_IMAGES = 64  # GPTQ's calibration images (hprune.quant.calibration)
