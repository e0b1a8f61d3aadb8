"""Adapter for diffusers' SD3Transformer2DModel (SD3 Medium, SD3.5 Large /
Large Turbo / Medium). SD3.5 Medium's dual-attention blocks add `attn2`."""

from __future__ import annotations

import torch.nn as nn

from hprune.model.base import Adapter
from hprune.model.mmdit import delete_from, joint_modules, joint_params, joint_part, joint_subs, joint_swaps
from hprune.model.units import Unit
from hprune.core.errors import HpruneError

SIGNATURE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim",
                  "in_channels", "patch_size", "dual_attention_layers", "qk_norm")


class SD3Adapter(Adapter):
    family = "sd3"
    model_class = "SD3Transformer2DModel"
    block_lists = {"joint": "transformer_blocks"}
    count_keys = {"joint": "num_layers"}

    def subcomponents(self, model, kind, index):
        return joint_subs(self.block_list(model, kind)[index])

    def block_removable(self, model, unit):
        # The last block (context_pre_only) feeds the final norm and has no
        # context MLP; diffusers rebuilds whatever block ends up last in that
        # shape, so removing it whole could not load back with from_pretrained.
        return not self.block_list(model, unit.kind)[unit.index].context_pre_only

    def unit_params(self, model, unit):
        block = self.block_list(model, unit.kind)[unit.index]
        if unit.is_block:
            return sum(p.numel() for p in block.parameters())
        return joint_params(block, unit.sub)

    def part_modules(self, block, kind):
        return joint_modules(block)

    def norm_linear(self, model, unit):
        return joint_part(self.block_list(model, unit.kind)[unit.index], unit.sub)

    def config_signature(self, config):
        sig = {k: config[k] for k in SIGNATURE_KEYS if k in config}
        sig["dual_attention_layers"] = list(sig.get("dual_attention_layers") or [])
        return {"class": self.model_class, **sig}

    def swaps(self, model, kind, index, subs, consts, physical):
        return joint_swaps(self.block_list(model, kind)[index], subs, consts)

    def delete_blocks(self, model: nn.Module, units: list[Unit]) -> None:
        blocks = self.block_list(model, "joint")
        if any(blocks[u.index].context_pre_only for u in units):
            raise HpruneError("the last SD3 block cannot be removed whole; remove its subcomponents instead.")
        dual = set(model.config.get("dual_attention_layers") or ())
        kept = delete_from(blocks, {u.index for u in units})
        model.register_to_config(
            num_layers=len(kept),
            dual_attention_layers=tuple(new for new, old in enumerate(kept) if old in dual),
        )
