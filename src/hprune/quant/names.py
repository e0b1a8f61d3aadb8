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
BF16 = "bf16"  # `hprune bench --quant`: no quantization, the bf16 weights
