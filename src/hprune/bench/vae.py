"""The VAE that turns the transformer's latents into pixels, for timing the decode at real size.

SD3.5 (Large, Medium, Turbo) and FLUX.1 (schnell, dev) ship the same AutoencoderKL network
(vae/config.json of the public checkpoints, typed in): 16 latent channels, 8x down/up sampling,
widths 128-256-512-512. They differ only in scaling_factor and shift_factor, which the pipeline
applies to the latents outside the network, so one config times both.
"""

from __future__ import annotations

import torch

CONFIG = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=1024, mid_block_add_attention=True,
              use_quant_conv=False, use_post_quant_conv=False, force_upcast=True)
SCALING = {"sd3": dict(scaling_factor=1.5305, shift_factor=0.0609),
           "flux": dict(scaling_factor=0.3611, shift_factor=0.1159)}
# Four levels kept, so the decoder still upsamples 8x; widths a test can run on a CPU.
TINY = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)


def build_vae(family: str, device="cuda", dtype: torch.dtype = torch.bfloat16, **overrides):
    """Random-weight AutoencoderKL of `family` ("sd3" | "flux") built directly on `device` in `dtype`."""
    from diffusers import AutoencoderKL

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            vae = AutoencoderKL(**{**CONFIG, **SCALING[family], **overrides})
    finally:
        torch.set_default_dtype(previous)
    return vae.to(dtype).eval().requires_grad_(False)


def random_latents(vae, batch: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """(batch, latent_channels, resolution / 8, resolution / 8) on the VAE's device and dtype."""
    param = next(vae.parameters())
    side = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(batch, vae.config.latent_channels, side, side, generator=g).to(param.device, param.dtype)
