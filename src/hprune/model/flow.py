"""The velocity a transformer predicts for a noisy input, per model family.

Inputs are images or latents in (B, C, H, W); FLUX sees them packed into
p x p patches (p = 2 for FLUX.1 latents, the toy uses pixel patches), with the
same (0, row, col) position ids FLUX pipelines use. Flow convention as in
diffusers: x_sigma = (1 - sigma) x0 + sigma noise, velocity = noise - x0.
"""

from __future__ import annotations

import torch

from hprune.model import get_adapter


def sd3_velocity(model, x, sigma, seq, pooled, config=None):
    # SD3 embeds timesteps on the scheduler's 0..1000 scale.
    return model(hidden_states=x, encoder_hidden_states=seq, pooled_projections=pooled,
                 timestep=sigma * 1000, return_dict=False)[0]


def grid_ids(rows: int, cols: int, device=None) -> torch.Tensor:
    """FLUX's rotary position ids for a rows x cols token grid: (0, row, col)."""
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.view(rows * cols, 3)


def flux_velocity(model, x, sigma, seq, pooled, guidance: float = 3.5, config=None):
    b, c, h, w = x.shape
    config = config or model.config  # a DDP wrapper has no .config
    p = round((config.in_channels // c) ** 0.5)
    tokens = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)
    extra = {}
    if config.get("guidance_embeds"):
        extra["guidance"] = torch.full((b,), guidance, device=x.device, dtype=x.dtype)
    out = model(hidden_states=tokens, encoder_hidden_states=seq, pooled_projections=pooled, timestep=sigma,
                img_ids=grid_ids(h // p, w // p, x.device), txt_ids=torch.zeros(seq.shape[1], 3, device=x.device),
                return_dict=False, **extra)[0]
    return out.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def velocity_fn(model):
    return {"sd3": sd3_velocity, "flux": flux_velocity}[get_adapter(model).family]
