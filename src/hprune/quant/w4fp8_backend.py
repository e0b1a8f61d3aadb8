"""Registers hprune's own 4-bit-storage / FP8-compute backend (see w4fp8.py)."""

from __future__ import annotations

import torch.nn as nn

from hprune.quant import Backend, replace_module
from hprune.quant.w4fp8 import W4Fp8Linear, supports


class W4Fp8Backend(Backend):
    def supports(self, linear: nn.Linear) -> bool:
        return supports(linear)

    def convert(self, model, names, config):
        for name in names:
            replace_module(model, name, W4Fp8Linear.from_linear(model.get_submodule(name), config.group_size))

    def restore(self, model, names, state, config, device):
        for name in names:
            lin = model.get_submodule(name)
            replace_module(model, name, W4Fp8Linear(lin.in_features, lin.out_features, lin.bias is not None, config.group_size, device="meta"))
        model.load_state_dict(state, strict=True, assign=True)


BACKENDS = [
    W4Fp8Backend(
        name="w4fp8",
        summary="int4 weights (bf16 scale per row; or per 128 inputs), FP8 activations per token, FP8 tensor cores (Hopper): "
                "per row, a Triton unpack to FP8 + cuBLAS's row-wise FP8 GEMM; per group, hprune's fused Triton GEMM",
    )
]
