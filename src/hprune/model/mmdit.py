"""The MMDiT joint block shared by SD3/SD3.5 and FLUX's double-stream blocks.

Both diffusers classes (`JointTransformerBlock`, `FluxTransformerBlock`) name
their parts the same way, so one description serves both adapters.
"""

from __future__ import annotations

import torch.nn as nn

from hprune.model.base import Swap, count_params
from hprune.model.stubs import ConstantModulation, DroppedAttention, DroppedFeedForward, is_removed
from hprune.model.units import NORM_SUBS

# subcomponent -> attribute of the block
JOINT_PARTS = {
    "norm": "norm1",
    "context_norm": "norm1_context",
    "attn": "attn",
    "attn2": "attn2",
    "mlp": "ff",
    "context_mlp": "ff_context",
}


def joint_subs(block: nn.Module) -> tuple[str, ...]:
    """The subcomponents `block` still has (a removed one is a stub, not listed)."""
    return tuple(sub for sub, attr in JOINT_PARTS.items()
                 if getattr(block, attr, None) is not None and not is_removed(joint_part(block, sub)))


def joint_modules(block: nn.Module) -> dict[str, nn.Module]:
    """Each subcomponent's whole module (a norm with its LayerNorm), for per-part learning rates."""
    return {sub: getattr(block, JOINT_PARTS[sub]) for sub in joint_subs(block)}


def joint_part(block: nn.Module, sub: str) -> nn.Module:
    """The module whose parameters removing `sub` deletes."""
    module = getattr(block, JOINT_PARTS[sub])
    return module.linear if sub in NORM_SUBS else module


def joint_params(block: nn.Module, sub: str) -> int:
    return count_params(joint_part(block, sub))


def joint_swaps(block: nn.Module, subs: set[str], consts: dict) -> list[Swap]:
    swaps = []
    for sub in sorted(subs):
        if sub in NORM_SUBS:
            swaps.append(Swap(getattr(block, JOINT_PARTS[sub]), "linear", ConstantModulation(consts[sub])))
        elif sub in ("attn", "attn2"):
            swaps.append(Swap(block, JOINT_PARTS[sub], DroppedAttention(joint=sub == "attn")))
        else:
            swaps.append(Swap(block, JOINT_PARTS[sub], DroppedFeedForward()))
    return swaps


def delete_from(blocks: nn.ModuleList, indices: set[int]) -> list[int]:
    """Delete `indices` from a ModuleList in place; return the kept old indices."""
    kept = [i for i in range(len(blocks)) if i not in indices]
    survivors = [blocks[i] for i in kept]
    blocks._modules.clear()
    for new_index, module in enumerate(survivors):
        blocks.add_module(str(new_index), module)
    return kept
