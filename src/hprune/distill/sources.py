"""Where distillation data comes from: the shapes world, an image folder with
captions, or a cache file written earlier. Built once, cached as safetensors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hprune.distill.data import DistillData
from hprune.core.errors import HpruneError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DATA_FILE = "distill_data-{key}.safetensors"  # in the run folder, keyed by what made it


def cached_data(folder: Path, key: tuple, make: Callable[[], DistillData]) -> DistillData:
    """`make()`'s data, made once and saved in `folder` under a name hashed from `key` (every
    setting that shapes the data), so a changed setting never reuses a stale cache. Always read
    back from the file: a resumed run trains on the same bytes as the run that made them."""
    name = DATA_FILE.format(key=hashlib.sha256(repr(key).encode()).hexdigest()[:12])
    cache = Path(folder) / name
    if not cache.is_file():
        data = make()
        cache.parent.mkdir(parents=True, exist_ok=True)
        data.save(cache)
    return DistillData.load(cache)


def build_data(spec: str, pipe, out: Path, resolution: int, seed: int, progress: bool = True) -> DistillData:
    """The distillation data of `spec`, cached in the run folder under a name keyed by
    (spec, resolution, seed), so a changed setting never reuses a stale cache."""
    if spec.endswith(".safetensors"):
        return DistillData.load(spec)
    return cached_data(out, (spec, resolution, seed), lambda: _make_data(spec, pipe, resolution, seed, progress))


def _make_data(spec: str, pipe, resolution: int, seed: int, progress: bool) -> DistillData:
    if not spec.startswith("shapes"):
        return folder_data(pipe, spec, resolution, progress=progress)
    if not hasattr(pipe.text_encoder, "encode"):
        raise HpruneError("--data shapes:N works only with the shapes teachers; for a diffusers pipeline pass "
                          "--data IMAGE_FOLDER (images with a .txt caption beside each).")
    n = int(spec.split(":", 1)[1]) if ":" in spec else 4096
    return shapes_data(pipe, n, seed=seed, progress=progress)


@torch.no_grad()
def shapes_data(pipe, n: int, seed: int = 0, empty_fraction: float = 0.1, chunk: int = 256,
                progress: bool = False) -> DistillData:
    """Renders of the shapes world's *training* split, encoded by the teacher's
    text encoder. A share of empty prompts keeps the unconditional velocity
    (used by classifier-free guidance) in the student too."""
    from hprune.toy.pipeline import to_model_space
    from hprune.toy.splits import sample_training_batch

    from hprune.core.progress import progress as progress_bar

    rng = np.random.default_rng(seed)
    with progress_bar(desc=f"distillation data: render {n} images", total=1, unit="set", enabled=progress) as bar:
        prompts, images, _ = sample_training_batch(rng, n, split="train")
        bar.update(1)
    prompts = ["" if rng.random() < empty_fraction else p for p in prompts]
    starts = progress_bar(range(0, n, chunk), desc="distillation data: encode captions", unit="chunk", enabled=progress)
    seqs, pools = zip(*(pipe.text_encoder.encode(prompts[i : i + chunk]) for i in starts))
    return DistillData(to_model_space(images), torch.cat(seqs).float().cpu(), torch.cat(pools).float().cpu())


@torch.no_grad()
def teacher_data(pipe, prompts: list[str], seed: int = 0, steps: int | None = None, size: int | None = None,
                 batch_size: int = 8, progress: bool = False) -> DistillData:
    """Data-free distillation data: the teacher's own samples of `prompts` (image i from
    seed + i) as the clean targets x0, with the prompts' text embeddings. Shapes teachers
    give images in [-1, 1]; diffusers pipelines their final latents (no VAE round trip)."""
    from tqdm.auto import tqdm

    from hprune.model.sampling import PromptSeed, SamplingConfig, make_sampler
    from hprune.toy.pipeline import ShapesPipeline, to_model_space

    items = [PromptSeed(p, seed + i) for i, p in enumerate(prompts)]
    sampler = make_sampler(pipe, SamplingConfig(steps=steps, size=size, batch_size=batch_size), items)
    x0, seqs, pools = [], [], []
    for batch, cond in tqdm(list(zip(sampler.batches, sampler.cond)), desc="teacher samples", unit="batch",
                            disable=not progress):
        seeds = [it.seed for it in batch]
        if isinstance(pipe, ShapesPipeline):
            x0.append(to_model_space(sampler.sample(cond, seeds)))
            seq, pooled = pipe.text_encoder.encode(cond)  # a shapes sampler's cond is the prompts
        else:
            x0.append(sampler.latents(cond, seeds).float().cpu())
            seq, pooled = cond["prompt_embeds"], cond["pooled_prompt_embeds"]
        seqs.append(seq.float().cpu())
        pools.append(pooled.float().cpu())
    return DistillData(torch.cat(x0), torch.cat(seqs), torch.cat(pools))


METADATA = "metadata.jsonl"  # Hugging Face imagefolder: one {"file_name": ..., "text": ...} a line


def check_caption_folder(folder: Path) -> None:
    """Raise HpruneError unless `folder` is an image folder whose images all have captions."""
    if not folder.is_dir():
        raise HpruneError(f"data source {folder} is not a folder; pass an image folder with captions "
                          "(metadata.jsonl, or a .txt beside each image), teacher:N or a .safetensors cache.")
    _images_and_captions(folder)


def _images_and_captions(folder: Path) -> list[tuple[object, str]]:
    """(image, caption) pairs: PIL images read by `datasets`' imagefolder when the folder has a
    metadata.jsonl, else image paths with a .txt caption beside each."""
    if (folder / METADATA).is_file():
        return _imagefolder(folder)
    pairs = []
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            raise HpruneError(f"{image} has no caption; add {folder / METADATA} (file_name and text per image, "
                              f"the Hugging Face imagefolder convention) or a {caption.name} beside it.")
        pairs.append((image, caption.read_text().strip()))
    if not pairs:
        raise HpruneError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) with captions.")
    return pairs


def _imagefolder(folder: Path) -> list[tuple[object, str]]:
    from datasets import load_dataset

    data = load_dataset("imagefolder", data_dir=str(folder), split="train")
    if "text" not in data.column_names:
        raise HpruneError(f"{folder / METADATA} has no 'text' column; write one "
                          '{"file_name": "x.png", "text": "its caption"} line per image.')
    if len(data) == 0:
        raise HpruneError(f"{folder} holds no images listed in {METADATA}.")
    return [(row["image"], row["text"]) for row in data]


@torch.no_grad()
def folder_data(pipe, folder: str | Path, size: int, chunk: int = 8, progress: bool = False) -> DistillData:
    """VAE latents and text embeddings of an image folder with captions (metadata.jsonl as
    Hugging Face imagefolder, or image.png + image.txt) for a real SD3/FLUX diffusers pipeline."""
    from hprune.core.progress import progress as progress_bar
    from hprune.model.sampling import encode_prompts

    pairs = _images_and_captions(Path(folder))
    latents, seqs, pools = [], [], []
    for i in progress_bar(range(0, len(pairs), chunk), desc="distillation data: encode images", unit="chunk",
                          enabled=progress):
        part = pairs[i : i + chunk]
        pixels = np.stack([np.asarray(_open(p).convert("RGB").resize((size, size))) for p, _ in part])
        x = torch.as_tensor(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(pipe.vae.device, pipe.vae.dtype)
        z = pipe.vae.encode(x).latent_dist.sample(torch.Generator(pipe.vae.device).manual_seed(i))
        cfg = pipe.vae.config
        latents.append(((z - (cfg.shift_factor or 0.0)) * cfg.scaling_factor).float().cpu())
        cond = encode_prompts(pipe, [c for _, c in part])
        seq, pooled = cond["prompt_embeds"], cond["pooled_prompt_embeds"]
        seqs.append(seq.float().cpu())
        pools.append(pooled.float().cpu())
    return DistillData(torch.cat(latents), torch.cat(seqs), torch.cat(pools))


def _open(image):
    from PIL import Image

    return image if isinstance(image, Image.Image) else Image.open(image)
