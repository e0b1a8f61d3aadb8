"""The quantization names the CLI offers, declared once without importing torch.

`hprune quantize --help` and `hprune bench --help` build their choices from
here; `hprune.quant.backends()` (which imports the backends, and torch) must
list exactly BACKEND_NAMES (tests/test_cli.py checks it).
"""

from __future__ import annotations

BACKEND_NAMES = ("bnb-nf4", "torchao-fp8", "torchao-int4", "torchao-int4-tinygemm", "w4fp8")
# Fastest 4-bit backend measured on the compiled SD3.5 Large 20% model (docs/benchmarks.md).
DEFAULT_BACKEND = "torchao-int4"
BF16 = "bf16"  # `hprune bench --quant`: no quantization, the bf16 weights
