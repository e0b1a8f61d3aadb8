"""What a removed unit leaves behind.

Removing a unit swaps one submodule of a diffusers block for one of these, so
the block's own forward (unchanged diffusers code) computes the pruned block.
None of them holds parameters: removed weights are gone, and the modules the
block still calls return what "dropping that branch" means.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SkippedBlock(nn.Module):
    """A whole block removed: the block returns its inputs unchanged."""

    def __init__(self, context_pre_only: bool = False):
        super().__init__()
        # diffusers' SD3 forward reads this attribute on every block.
        self.context_pre_only = context_pre_only

    def forward(self, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        return encoder_hidden_states, hidden_states


class DroppedAttention(nn.Module):
    """A removed attention: its gated residual branch adds zero."""

    def __init__(self, joint: bool):
        super().__init__()
        self.joint = joint

    def forward(self, hidden_states, encoder_hidden_states=None, **kwargs):
        if self.joint:
            context = None if encoder_hidden_states is None else torch.zeros_like(encoder_hidden_states)
            return torch.zeros_like(hidden_states), context
        return torch.zeros_like(hidden_states)


class DroppedFeedForward(nn.Module):
    """A removed MLP: its gated residual branch adds zero."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


class ZeroWidth(nn.Module):
    """A removed branch of a FLUX single block: contributes no features to the
    concatenation that feeds `proj_out`."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0)


class ConstantModulation(nn.Module):
    """Replaces an AdaLN `linear`: the modulation no longer depends on the
    timestep/text embedding. `value` is the calibrated mean (mode `mean`) or
    shift 0, scale 0, gate 1 (mode `identity`)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value.detach().clone())

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.value.to(emb.dtype).expand(emb.shape[0], -1)


class ColumnSlice(nn.Module):
    """A view of `linear` that keeps input columns [start, stop): used while a
    FLUX single block's `proj_out` loses the columns of a removed branch,
    without copying the weight (reversible surgery)."""

    def __init__(self, linear: nn.Linear, start: int, stop: int):
        super().__init__()
        self.linear, self.start, self.stop = linear, start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.linear) is not nn.Linear:  # a wrapped layer (a LoRA) reads zeros in the removed columns
            pad = [x.new_zeros(*x.shape[:-1], n) for n in (self.start, self.linear.in_features - self.stop)]
            return self.linear(torch.cat([pad[0], x, pad[1]], -1))
        return F.linear(x, self.linear.weight[:, self.start : self.stop], self.linear.bias)


def sliced_linear(linear: nn.Linear, start: int, stop: int) -> nn.Linear:
    """A new, smaller Linear holding only input columns [start, stop)."""
    weight = linear.weight[:, start:stop]
    out = nn.Linear(stop - start, linear.out_features, bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight = nn.Parameter(weight.clone(), requires_grad=linear.weight.requires_grad)
        if linear.bias is not None:
            out.bias = nn.Parameter(linear.bias.clone(), requires_grad=linear.bias.requires_grad)
    return out


def is_removed(module) -> bool:
    """True for what a removed unit leaves behind (the stubs above)."""
    return isinstance(module, (SkippedBlock, DroppedAttention, DroppedFeedForward, ZeroWidth, ConstantModulation))
