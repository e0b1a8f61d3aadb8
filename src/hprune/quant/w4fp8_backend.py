"""Registers hprune's own 4-bit-storage / FP8-compute backend (see w4fp8.py)."""

from __future__ import annotations

import sys

import torch.nn as nn

from hprune.quant import Backend, replace_module
from hprune.quant import w4fp8
from hprune.quant.w4fp8 import W4Fp8Linear, fp8_compute, row_scales, supports


class W4Fp8Backend(Backend):
    def check(self, device=None, folder=None) -> None:
        """As every backend, plus one line on stderr where the GPU has no FP8 tensor cores."""
        super().check(device=device, folder=folder)
        import torch

        where = torch.device(device if device is not None else "cuda")
        on_gpu, index = torch.cuda.is_available() and where.type == "cuda", where.index or 0
        w4fp8.FP8_COMPUTE = not on_gpu or fp8_compute(index)
        if not w4fp8.FP8_COMPUTE:
            major, minor = torch.cuda.get_device_capability(index)
            print(f"hprune: {torch.cuda.get_device_name(index)} (compute capability {major}.{minor}) has no FP8 tensor "
                  "cores (8.9+): w4fp8 runs there as int4 weights dequantized to 16 bits per call, correct but slower "
                  "than --backend bnb-nf4 or torchao-int4 on this GPU.", file=sys.stderr)

    def supports(self, linear: nn.Linear, config) -> bool:
        return supports(linear)

    def convert(self, model, names, config, hessians: dict | None = None):
        """`hessians` (name -> H, from hprune.quant.gptq): those layers' codes rounded by GPTQ, same-shape
        layers together (iter_gptq_codes), each layer replaced as its codes come; the rest to nearest."""
        from hprune.quant.gptq import iter_gptq_codes

        rounded = [n for n in names if n in (hessians or {})]
        layers = [(w, hessians[n], row_scales(w)) for n, w in ((n, model.get_submodule(n).weight.data) for n in rounded)]
        for i, codes in iter_gptq_codes(layers):
            replace_module(model, rounded[i], W4Fp8Linear.from_linear(model.get_submodule(rounded[i]), config.group_size, codes))
            layers[i] = None  # its batch is done: the 16-bit weight goes with the module it left
        for name in names:
            if name not in (hessians or {}):
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
