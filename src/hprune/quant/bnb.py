"""bitsandbytes NF4 (W4A16), the paper's recipe: double quantization, blocks of 64."""

from __future__ import annotations

import torch

from hprune.quant import Backend, replace_module


class BnbNf4Backend(Backend):
    def _linear4bit(self, lin, config, device):
        import bitsandbytes as bnb

        return bnb.nn.Linear4bit(
            lin.in_features, lin.out_features, bias=lin.bias is not None, compute_dtype=config.torch_compute_dtype,
            compress_statistics=config.double_quant, quant_type="nf4", device=device,
        )

    def convert(self, model, names, config):
        import bitsandbytes as bnb

        for name in names:
            lin = model.get_submodule(name)
            new = self._linear4bit(lin, config, "meta")
            weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=config.double_quant, module=new)
            new.weight = weight._quantize(lin.weight.device)  # quantizes where the weight already lives
            if lin.bias is not None:
                new.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
            replace_module(model, name, new)

    def restore(self, model, names, state, config, device):
        import bitsandbytes as bnb

        rest = dict(state)
        for name in names:
            new = self._linear4bit(model.get_submodule(name), config, "meta")
            stats = {k[len(name) + len(".weight."):]: rest.pop(k) for k in list(rest) if k.startswith(name + ".weight.")}
            new.weight = bnb.nn.Params4bit.from_prequantized(rest.pop(name + ".weight"), stats, device=device, module=new)
            if name + ".bias" in rest:
                new.bias = torch.nn.Parameter(rest.pop(name + ".bias").to(device), requires_grad=False)
            replace_module(model, name, new)
        model.load_state_dict(rest, strict=False, assign=True)

    def diffusers_config(self, config, skipped: list[str]) -> dict:
        """`quantization_config` for config.json, so diffusers' from_pretrained loads it too."""
        from diffusers import BitsAndBytesConfig

        cfg = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=config.double_quant,
            bnb_4bit_compute_dtype=config.torch_compute_dtype, llm_int8_skip_modules=skipped or None,
        )
        return cfg.to_dict()


BACKENDS = [
    BnbNf4Backend(
        name="bnb-nf4",
        summary="bitsandbytes NF4 weights, 16-bit compute (W4A16), double quantization: the paper's recipe",
        packages=("bitsandbytes",), pip_names=("bitsandbytes",),
    )
]
