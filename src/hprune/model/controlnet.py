"""ControlNet residuals of the original model, on a pruned transformer.

diffusers' SD3 and FLUX ControlNets return one residual per group of transformer blocks, and the
transformer's forward spreads them over the blocks it has now: block i adds residual
int(i / (blocks / residuals)) (SD3), i // ceil(blocks / residuals) (FLUX), or i % residuals
(FLUX ControlNets with `controlnet_blocks_repeat`, XLabs'). After whole-block pruning a
ControlNet made for the original model lands on the wrong blocks, silently.

`controlnet_residuals` gives each remaining block the residual its original index gets in the
unpruned model, plus those of the removed blocks that followed it: a removed block is the
identity, so its residual lands on the same hidden states. That equals the ControlNet on the
original model with the same blocks removed reversibly. A removed block before every remaining
one has no block to add its residual after; it is left out with one logged line.
`with_original_indices` (hprune.model.original_indices) translates the transformer's ControlNet
arguments this way on every call.
"""

from __future__ import annotations

import logging
import math

import torch.nn as nn

from hprune.model import get_adapter

log = logging.getLogger("hprune")

# The transformer's keyword argument -> the block kind whose residuals it holds.
RESIDUAL_ARGS = {"block_controlnet_hidden_states": "joint", "controlnet_block_samples": "joint",
                 "controlnet_single_block_samples": "single"}


def _residual_index(family: str, index: int, blocks: int, residuals: int, repeat: bool) -> int:
    # Copied from the "controlnet residual" lines of diffusers' SD3Transformer2DModel.forward and
    # FluxTransformer2DModel.forward; tests/model/test_controlnet.py compares with those forwards.
    if family == "sd3":
        return int(index / (blocks / residuals))
    if repeat:
        return index % residuals
    return index // int(math.ceil(blocks / residuals))


def controlnet_residuals(model: nn.Module, residuals, kind: str = "joint", repeat: bool = False) -> list:
    """ControlNet residuals made for the original (unpruned) model -> one residual per block of
    `model`, so that its forward (which then adds residual j after block j) matches the original
    model with the same blocks removed reversibly. `repeat`: the transformer's
    `controlnet_blocks_repeat`."""
    adapter = get_adapter(model)
    bmap = adapter.block_map(model)
    blocks, mapping = bmap.original[kind], bmap.mapping(kind)
    current = adapter.block_list(model, kind)
    out, previous, left_out = [None] * len(current), None, []
    for index in range(blocks):
        residual = residuals[_residual_index(adapter.family, index, blocks, len(residuals), repeat)]
        if index in mapping:
            previous = mapping[index]
            # diffusers adds nothing after SD3's last block (context_pre_only); the entry is never read
            out[previous] = residual.clone() if not getattr(current[previous], "context_pre_only", False) else residual * 0
        elif previous is None:
            left_out.append(f"{kind}.{index}")
        else:
            out[previous] = out[previous] + residual
    if left_out:
        log.warning("hprune: the ControlNet residuals of %s are left out: pruning removed those blocks and no "
                    "remaining block comes before them.", ", ".join(left_out))
    return out


def translate_controlnet_kwargs(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A forward pre-hook (with_kwargs=True): the transformer's ControlNet arguments, given for
    the original model, spread over `model`'s blocks by `controlnet_residuals`."""
    repeat = bool(kwargs.get("controlnet_blocks_repeat", False))
    for name, kind in RESIDUAL_ARGS.items():
        if kwargs.get(name) is not None:
            kwargs[name] = controlnet_residuals(model, kwargs[name], kind, repeat)
    return args, kwargs


def install_controlnet_translation(model: nn.Module) -> None:
    """Translate `model`'s ControlNet arguments on every call (once per model)."""
    if not getattr(model, "_hprune_controlnet_hook", None):
        model._hprune_controlnet_hook = model.register_forward_pre_hook(translate_controlnet_kwargs, with_kwargs=True)
