"""Where distillation data comes from: the shapes world, an image folder with
captions, or a cache file written earlier. Built once, cached as safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hprune.distill.data import DistillData
from hprune.errors import HpruneError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@torch.no_grad()
def shapes_data(pipe, n: int, seed: int = 0, empty_fraction: float = 0.1, chunk: int = 256) -> DistillData:
    """Renders of the shapes world's *training* split, encoded by the teacher's
    text encoder. A share of empty prompts keeps the unconditional velocity
    (used by classifier-free guidance) in the student too."""
    from hprune.toy.pipeline import to_model_space
    from hprune.toy.splits import sample_training_batch

    rng = np.random.default_rng(seed)
    prompts, images, _ = sample_training_batch(rng, n, split="train")
    prompts = ["" if rng.random() < empty_fraction else p for p in prompts]
    seqs, pools = zip(*(pipe.text_encoder.encode(prompts[i : i + chunk]) for i in range(0, n, chunk)))
    return DistillData(to_model_space(images), torch.cat(seqs).float().cpu(), torch.cat(pools).float().cpu())


def _images_and_captions(folder: Path) -> list[tuple[Path, str]]:
    pairs = []
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            raise HpruneError(f"{image} has no caption file {caption.name}; put one caption per image beside it.")
        pairs.append((image, caption.read_text().strip()))
    if not pairs:
        raise HpruneError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) with captions.")
    return pairs


@torch.no_grad()
def folder_data(pipe, folder: str | Path, size: int, chunk: int = 8) -> DistillData:
    """VAE latents and text embeddings of an image folder (image.png + image.txt)
    for a real SD3/FLUX diffusers pipeline."""
    from PIL import Image

    pairs = _images_and_captions(Path(folder))
    latents, seqs, pools = [], [], []
    for i in range(0, len(pairs), chunk):
        part = pairs[i : i + chunk]
        pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p, _ in part])
        x = torch.as_tensor(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(pipe.vae.device, pipe.vae.dtype)
        z = pipe.vae.encode(x).latent_dist.sample(torch.Generator(pipe.vae.device).manual_seed(i))
        cfg = pipe.vae.config
        latents.append(((z - (cfg.shift_factor or 0.0)) * cfg.scaling_factor).float().cpu())
        seq, pooled = _encode_prompt(pipe, [c for _, c in part])
        seqs.append(seq.float().cpu())
        pools.append(pooled.float().cpu())
    return DistillData(torch.cat(latents), torch.cat(seqs), torch.cat(pools))


def _encode_prompt(pipe, captions: list[str]):
    kwargs = dict(prompt=captions, prompt_2=None, max_sequence_length=_max_len(pipe))
    if hasattr(pipe, "text_encoder_3"):  # SD3 family
        seq, _, pooled, _ = pipe.encode_prompt(prompt_3=None, do_classifier_free_guidance=False, **kwargs)
        return seq, pooled
    seq, pooled, _ = pipe.encode_prompt(**kwargs)
    return seq, pooled


def _max_len(pipe) -> int:
    tokenizer = getattr(pipe, "tokenizer_3", None) or getattr(pipe, "tokenizer_2", None)
    return min(256, getattr(tokenizer, "model_max_length", 256))
