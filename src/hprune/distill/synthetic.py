"""Random distillation data of a model's shapes (`hprune distill --synthetic-data N`): latents
and text embeddings drawn from a seed, to measure speed and memory without a dataset. Weights
and data values change neither, so the numbers hold for real data of the same shapes."""

from __future__ import annotations

import torch

from hprune.model import get_adapter
from hprune.distill.data import DistillData
from hprune.core.errors import HpruneError

# tokens the SD3 (CLIP 77 + T5 256) and FLUX (T5 512) pipelines feed by default
TEXT_TOKENS = {"sd3": 77 + 256, "flux": 512}


def input_shape(pipe, resolution: int) -> tuple[int, int]:
    """(channels, side) of one clean input x0: the VAE's latents of a `resolution` image for a
    diffusers pipeline, the pixels of its own image size for a shapes (pixel-space) teacher."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return 3, pipe.config.image_size
    return vae.config.latent_channels, resolution // pipe.vae_scale_factor


def synthetic_data(model, n: int, channels: int, side: int, text_tokens: int | None = None,
                   seed: int = 0) -> DistillData:
    """`n` random inputs (channels, side, side) and text embeddings shaped for `model`."""
    if n < 1:
        raise HpruneError(f"--synthetic-data must be at least 1 (got {n}).")
    config = model.config
    text_tokens = text_tokens or TEXT_TOKENS[get_adapter(model).family]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, channels, side, side, generator=gen)
    seq = torch.randn(n, text_tokens, config.joint_attention_dim, generator=gen)
    pooled = torch.randn(n, config.pooled_projection_dim, generator=gen)
    return DistillData(x0, seq, pooled)
