"""Adapter for diffusers' FluxTransformer2DModel (FLUX.1 schnell and dev):
double-stream `transformer_blocks` (kind `joint`) and single-stream
`single_transformer_blocks` (kind `single`)."""

from __future__ import annotations

import torch.nn as nn

from hprune.model.base import Adapter, Swap, count_params
from hprune.model.mmdit import delete_from, joint_modules, joint_params, joint_part, joint_subs, joint_swaps
from hprune.model.stubs import ColumnSlice, ConstantModulation, ZeroWidth, is_removed, sliced_linear
from hprune.model.units import SINGLE_SUBS, Unit

SIGNATURE_KEYS = ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim",
                  "joint_attention_dim", "in_channels", "patch_size")
# single-block subcomponent -> attribute of the block; proj_out is shared by attn and
# mlp_proj (sliced when one goes), so it belongs to neither.
SINGLE_PARTS = {"norm": "norm", "attn": "attn", "mlp_proj": "proj_mlp"}


def _single_dims(block: nn.Module) -> tuple[int, int]:
    return block.proj_out.out_features, block.mlp_hidden_dim


class FluxAdapter(Adapter):
    family = "flux"
    model_class = "FluxTransformer2DModel"
    block_lists = {"joint": "transformer_blocks", "single": "single_transformer_blocks"}
    count_keys = {"joint": "num_layers", "single": "num_single_layers"}

    def subcomponents(self, model, kind, index):
        block = self.block_list(model, kind)[index]
        if kind == "joint":
            return joint_subs(block)
        return tuple(sub for sub in SINGLE_SUBS if not is_removed(self._single_part(block, sub)))

    @staticmethod
    def _single_part(block: nn.Module, sub: str) -> nn.Module:
        return block.norm.linear if sub == "norm" else getattr(block, SINGLE_PARTS[sub])

    def unit_params(self, model, unit):
        block = self.block_list(model, unit.kind)[unit.index]
        if unit.is_block:
            return count_params(block)
        if unit.kind == "joint":
            return joint_params(block, unit.sub)
        dim, mlp = _single_dims(block)
        # A removed single-block branch also takes its columns of proj_out.
        return {
            "norm": count_params(block.norm.linear),
            "attn": count_params(block.attn) + dim * dim,
            "mlp_proj": count_params(block.proj_mlp) + dim * mlp,
        }[unit.sub]

    def part_modules(self, block, kind):
        if kind == "joint":
            return joint_modules(block)
        return {sub: getattr(block, attr) for sub, attr in SINGLE_PARTS.items()
                if not is_removed(self._single_part(block, sub))}

    def norm_linear(self, model, unit):
        block = self.block_list(model, unit.kind)[unit.index]
        return joint_part(block, unit.sub) if unit.kind == "joint" else block.norm.linear

    def config_signature(self, config):
        return {"class": self.model_class, **{k: config[k] for k in SIGNATURE_KEYS if k in config}}

    def swaps(self, model, kind, index, subs, consts, physical):
        block = self.block_list(model, kind)[index]
        if kind == "joint":
            return joint_swaps(block, subs, consts)
        return _single_swaps(block, subs, consts, physical)

    def delete_blocks(self, model: nn.Module, units: list[Unit]) -> None:
        counts = {}
        for kind, key in self.count_keys.items():
            kept = delete_from(self.block_list(model, kind), {u.index for u in units if u.kind == kind})
            counts[key] = len(kept)
        model.register_to_config(**counts)


def _single_swaps(block: nn.Module, subs: set[str], consts: dict, physical: bool) -> list[Swap]:
    swaps = []
    if "norm" in subs:
        swaps.append(Swap(block.norm, "linear", ConstantModulation(consts["norm"])))
    for sub in ("attn", "mlp_proj"):
        if sub in subs:
            swaps.append(Swap(block, SINGLE_PARTS[sub], ZeroWidth()))
    if subs & {"attn", "mlp_proj"}:
        # proj_out reads [attn features | mlp features]; keep the surviving columns.
        dim, mlp = _single_dims(block)
        start = dim if "attn" in subs else 0
        stop = dim if "mlp_proj" in subs else dim + mlp
        cut = sliced_linear if physical else ColumnSlice
        swaps.append(Swap(block, "proj_out", cut(block.proj_out, start, stop)))
    return swaps
