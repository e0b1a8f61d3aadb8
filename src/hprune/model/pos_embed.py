"""Crop SD3's position-embedding table to the image sizes a user serves.

SD3 / SD3.5 keep a sin-cos table of `pos_embed_max_size`^2 positions (SD3.5 Large: 192 x 192 x 2432,
171 MiB in bf16) and cut the centre `h x w` patch grid out of it for each image
(diffusers `PatchEmbed.cropped_pos_embed`: top = (S - h) // 2). A 1024 x 1024 image needs only the
centre 64 x 64 (19 MiB). Keeping a centred `S' x S'` square with S - S' even returns exactly the same
embeddings for every grid up to S' a side, because (S - S') / 2 + (S' - h) // 2 == (S - h) // 2:
the crop saves memory and changes no output. FLUX's rotary positions have no table.
"""

from __future__ import annotations

import torch.nn as nn

from hprune.core.errors import HpruneError
from hprune.core.provenance import record

STAGE = "crop_pos_embed"


def crop_grid(full: int, max_size: int, pixels_per_patch: int) -> int:
    """The kept grid side S' for images up to `max_size` pixels a side: the patches they need,
    rounded up to the parity of `full` (so the centred crop is exact), at most `full`."""
    if max_size < 1:
        raise HpruneError(f"--max-size must be a positive number of pixels, got {max_size}.")
    need = -(-max_size // pixels_per_patch)
    side = need + (full - need) % 2
    if need > full:
        raise HpruneError(f"--max-size {max_size} is larger than this model draws: its table holds "
                          f"{full * pixels_per_patch} pixels a side.")
    return side


def crop_pos_embed(transformer: nn.Module, max_size: int, vae_scale_factor: int = 8) -> int:
    """Keep only the positions of images up to `max_size` pixels a side; returns the table's new side.

    Works in place on an SD3 transformer (its `pos_embed.pos_embed` buffer [1, S*S, D] becomes
    [1, S'*S', D]; `config.pos_embed_max_size` becomes S', so the saved folder loads with plain
    diffusers too) and records the step in the model's history (`hprune.load` replays it). Larger
    images are refused afterwards by diffusers (and by `hprune generate --size`).
    Raises HpruneError for a model without a position table (FLUX) or a `max_size` the table cannot hold."""
    patch_embed = getattr(transformer, "pos_embed", None)
    full = getattr(patch_embed, "pos_embed_max_size", None)
    if not full or getattr(patch_embed, "pos_embed", None) is None:
        raise HpruneError(f"{type(transformer).__name__} has no position-embedding table to crop "
                          "(only SD3 / SD3.5 models have one); drop --max-size.")
    side = crop_grid(full, max_size, vae_scale_factor * transformer.config.patch_size)
    record(transformer, STAGE, max_size=max_size, vae_scale_factor=vae_scale_factor, grid=side)
    apply_crop(transformer, side)
    return side


def apply_crop(transformer: nn.Module, side: int) -> None:
    """The centred `side x side` crop of the table, and the config that describes it."""
    patch_embed = transformer.pos_embed
    full, table = patch_embed.pos_embed_max_size, patch_embed.pos_embed
    if side == full:
        return
    top = (full - side) // 2
    grid = table.reshape(1, full, full, -1)[:, top:top + side, top:top + side, :]
    patch_embed.pos_embed = grid.reshape(1, side * side, -1).clone()
    patch_embed.pos_embed_max_size = side
    transformer.register_to_config(pos_embed_max_size=side)
