"""Original-index names -> current names for one pruned model: the piece that
hprune.model.original_indices (LoRA, layer lists) and hprune.model.ip_adapter share."""

from __future__ import annotations

import re

import torch.nn as nn

from hprune.model import get_adapter
from hprune.model.flux import SINGLE_PARTS
from hprune.model.mmdit import JOINT_PARTS
from hprune.model.units import Unit
from hprune.core.errors import HpruneError

# `transformer_blocks.12.` / `single_transformer_blocks.3.` anywhere in a key, after any prefix
# (the lookbehind keeps `transformer_blocks` inside `single_transformer_blocks` from matching).
_BLOCK = re.compile(r"(?<![A-Za-z0-9_])(transformer_blocks|single_transformer_blocks)\.(\d+)\.")
# Key layouts diffusers converts in `pipe.lora_state_dict` (BFL/kohya FLUX, SAI SD3 names).
_OTHER_LAYOUTS = ("double_blocks", "single_blocks", "joint_blocks")
_PARTS = {"joint": JOINT_PARTS, "single": SINGLE_PARTS}


class OriginalNames:
    """Original-index names -> current names for one model."""

    def __init__(self, model: nn.Module):
        adapter = get_adapter(model)
        self.model, self.adapter = model, adapter
        self.kinds = {attr: kind for kind, attr in adapter.block_lists.items()}
        bmap = adapter.block_map(model)
        self.original = bmap.original
        self.mapping = {kind: bmap.mapping(kind) for kind in self.kinds.values()}
        self.removed = adapter.removed_units(model)

    def translate(self, key: str) -> tuple[str | None, Unit | None]:
        """(`key` in current indices, or None when pruning removed what it names; the unit it names)."""
        match = _BLOCK.search(key)
        if match is None or match.group(1) not in self.kinds:
            if any(layout in key for layout in _OTHER_LAYOUTS):
                raise HpruneError(f"'{key}' is not in diffusers' key layout; convert the state dict first "
                                  "(pipe.lora_state_dict(path) does) and pass the result.")
            return key, None
        kind, index = self.kinds[match.group(1)], int(match.group(2))
        if index >= self.original[kind]:
            raise HpruneError(f"'{key}' names {kind} block {index}, but the original model had "
                              f"{self.original[kind]} {kind} blocks; it was made for another model.")
        rest = key[match.end():]
        for sub, attr in _PARTS[kind].items():
            if rest.startswith(attr + ".") and Unit(kind, index, sub) in self.removed:
                return None, Unit(kind, index, sub)
        if index not in self.mapping[kind]:
            return None, Unit(kind, index)
        return key[:match.start(2)] + str(self.mapping[kind][index]) + key[match.end(2):], Unit(kind, index)

    def slice_proj_out(self, key: str, unit: Unit | None, value):
        """The input side of a LoRA on a FLUX single block's `proj_out`, cut like its base weight."""
        if unit is None or unit.kind != "single" or ".proj_out.lora_A." not in key:
            return value
        subs = {sub for sub in ("attn", "mlp_proj") if Unit("single", unit.index, sub) in self.removed}
        block = self.adapter.block_list(self.model, "single")[self.mapping["single"][unit.index]]
        dim, mlp = block.proj_out.out_features, block.mlp_hidden_dim
        if not subs or value.shape[-1] != dim + mlp:
            return value
        start = dim if "attn" in subs else 0
        stop = dim if "mlp_proj" in subs else dim + mlp
        return value[..., start:stop].contiguous()

    def translate_name(self, name: str) -> str | None:
        """A module name (a LoRA config's target_modules, rank_pattern keys) in current indices."""
        new, _ = self.translate(name + ".")
        return None if new is None else new[:-1]
