"""Tiny random-weight models and pipelines of each family, built locally from
config: every code path for real models runs on CPU in seconds, no download."""

from __future__ import annotations

import torch

TINY_WIDTH = 16  # heads * head_dim


def _seeded(seed: int):
    torch.manual_seed(seed)


def tiny_sd3(num_layers: int = 4, dual_attention_layers: tuple = (), seed: int = 0, **overrides):
    from diffusers import SD3Transformer2DModel

    _seeded(seed)
    config = dict(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=num_layers,
                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                  caption_projection_dim=TINY_WIDTH, pooled_projection_dim=16, pos_embed_max_size=16,
                  qk_norm="rms_norm", dual_attention_layers=dual_attention_layers)
    return SD3Transformer2DModel(**{**config, **overrides}).eval()


def tiny_sd35_medium(num_layers: int = 4, seed: int = 0):
    """SD3.5 Medium's layout: the first blocks have dual attention (`attn2`)."""
    return tiny_sd3(num_layers=num_layers, dual_attention_layers=tuple(range(num_layers // 2)), seed=seed)


def tiny_flux(num_layers: int = 2, num_single_layers: int = 3, seed: int = 0, **overrides):
    from diffusers import FluxTransformer2DModel

    _seeded(seed)
    config = dict(patch_size=1, in_channels=4, out_channels=4, num_layers=num_layers,
                  num_single_layers=num_single_layers, attention_head_dim=8, num_attention_heads=2,
                  joint_attention_dim=32, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4))
    return FluxTransformer2DModel(**{**config, **overrides}).eval()


TINY_MODELS = {"sd3": tiny_sd3, "sd35-medium": tiny_sd35_medium, "flux": tiny_flux}


def dummy_inputs(model, batch: int = 2, seed: int = 0, text_len: int = 6) -> dict:
    """Keyword arguments for one forward call of a tiny (or any) model."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    timestep = torch.rand(batch, generator=gen) * 1000
    if type(model).__name__ == "FluxTransformer2DModel":
        side = 4
        return dict(
            hidden_states=torch.randn(batch, side * side, cfg.in_channels, generator=gen),
            encoder_hidden_states=torch.randn(batch, text_len, cfg.joint_attention_dim, generator=gen),
            pooled_projections=torch.randn(batch, cfg.pooled_projection_dim, generator=gen),
            timestep=timestep / 1000,
            img_ids=_flux_ids(side, side),
            txt_ids=torch.zeros(text_len, 3),
            guidance=None,
            return_dict=False,
        )
    side = cfg.sample_size
    return dict(
        hidden_states=torch.randn(batch, cfg.in_channels, side, side, generator=gen),
        encoder_hidden_states=torch.randn(batch, text_len, cfg.joint_attention_dim, generator=gen),
        pooled_projections=torch.randn(batch, cfg.pooled_projection_dim, generator=gen),
        timestep=timestep,
        return_dict=False,
    )


def _flux_ids(height: int, width: int) -> torch.Tensor:
    ids = torch.zeros(height, width, 3)
    ids[..., 1] = torch.arange(height)[:, None]
    ids[..., 2] = torch.arange(width)[None, :]
    return ids.reshape(height * width, 3)
