"""Published transformer configs (config.json of the public checkpoints, typed in) and their inputs.

torch is imported inside the functions: `hprune bench --help` lists ARCHS without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hprune.core.errors import HpruneError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Arch:
    name: str
    family: str  # "sd3" | "flux"
    config: dict
    text_tokens: int  # tokens the pipeline feeds at its default max length
    text_encoders: tuple[str, ...]


_SD3_COMMON = dict(in_channels=16, out_channels=16, patch_size=2, sample_size=128, joint_attention_dim=4096,
                   pooled_projection_dim=2048, attention_head_dim=64, qk_norm="rms_norm")
_FLUX_COMMON = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=(16, 56, 56))

ARCHS = {
    # stabilityai/stable-diffusion-3.5-large (and -large-turbo), transformer/config.json
    "sd3.5-large": Arch("sd3.5-large", "sd3", dict(_SD3_COMMON, num_layers=38, num_attention_heads=38,
                        caption_projection_dim=2432, pos_embed_max_size=192, dual_attention_layers=()),
                        text_tokens=77 + 256, text_encoders=("clip-l", "clip-g", "t5-xxl")),
    # stabilityai/stable-diffusion-3.5-medium
    "sd3.5-medium": Arch("sd3.5-medium", "sd3", dict(_SD3_COMMON, num_layers=24, num_attention_heads=24,
                         caption_projection_dim=1536, pos_embed_max_size=384, dual_attention_layers=tuple(range(13))),
                         text_tokens=77 + 256, text_encoders=("clip-l", "clip-g", "t5-xxl")),
    # black-forest-labs/FLUX.1-schnell and FLUX.1-dev (dev adds the guidance embedder)
    "flux.1-schnell": Arch("flux.1-schnell", "flux", dict(_FLUX_COMMON, guidance_embeds=False),
                           text_tokens=512, text_encoders=("clip-l", "t5-xxl")),
    "flux.1-dev": Arch("flux.1-dev", "flux", dict(_FLUX_COMMON, guidance_embeds=True),
                       text_tokens=512, text_encoders=("clip-l", "t5-xxl")),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise HpruneError(f"unknown --arch '{name}'; choose one of {sorted(ARCHS)}.")
    return ARCHS[name]


def build_transformer(arch: Arch, device="cuda", dtype: torch.dtype | None = None, **overrides) -> torch.nn.Module:
    """Random-weight transformer built directly on `device` in `dtype` (default bfloat16; overrides shrink it for tests)."""
    import torch
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    dtype = torch.bfloat16 if dtype is None else dtype
    cls = SD3Transformer2DModel if arch.family == "sd3" else FluxTransformer2DModel
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls.from_config({**arch.config, **overrides})
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval().requires_grad_(False)  # buffers made in float32 (pos_embed) too


def latent_tokens(model, resolution: int) -> int:
    cfg = model.config
    side = resolution // 8 // cfg.patch_size if "sample_size" in cfg else resolution // 16
    return side * side


def make_inputs(arch: Arch, model, resolution: int, batch: int = 1, text_tokens: int | None = None, seed: int = 0) -> dict:
    """Model kwargs for one denoising step at `resolution` (VAE factor 8)."""
    import torch

    cfg = model.config
    dev, dtype = next(model.parameters()).device, torch.bfloat16
    text = text_tokens or arch.text_tokens
    g = torch.Generator(device="cpu").manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(dev, dtype)  # noqa: E731
    latent = resolution // 8
    kw = dict(encoder_hidden_states=rand(batch, text, cfg.joint_attention_dim), pooled_projections=rand(batch, cfg.pooled_projection_dim))
    if arch.family == "sd3":
        return dict(kw, hidden_states=rand(batch, cfg.in_channels, latent, latent), timestep=torch.full((batch,), 500.0, device=dev))
    side = latent // 2
    ids = torch.zeros(side, side, 3)
    ids[..., 1] += torch.arange(side)[:, None]
    ids[..., 2] += torch.arange(side)[None, :]
    kw.update(hidden_states=rand(batch, side * side, cfg.in_channels), timestep=torch.full((batch,), 0.5, device=dev, dtype=dtype),
              img_ids=ids.view(-1, 3).to(dev, dtype), txt_ids=torch.zeros(text, 3, device=dev, dtype=dtype))
    if cfg.guidance_embeds:
        kw["guidance"] = torch.full((batch,), 3.5, device=dev, dtype=dtype)
    return kw


def set_timestep(arch: Arch, kwargs: dict, t: float) -> None:
    """t in (0, 1]: SD3 takes timesteps in [0, 1000], FLUX in [0, 1]."""
    kwargs["timestep"].fill_(t * 1000.0 if arch.family == "sd3" else t)
