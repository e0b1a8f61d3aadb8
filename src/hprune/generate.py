"""Batched generation: prompts -> images, in memory or into a folder.

Each image is drawn from its own seed alone (see ShapesPipeline.initial_noise):
an item's seed plus the run's seed offset. Results do not depend on the batch
size, on batch order or on a resume. A generation folder holds `00000.png ...`, `generations.jsonl`
(one line per image: index, prompt, seed, path, and the scene when known) and
`generation.json` (what produced it). Generation into a folder resumes: images
already listed in `generations.jsonl` are kept, the rest are drawn.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from hprune.errors import HpruneError
from hprune.files import read_jsonl, write_atomic

LOG = "generations.jsonl"
SETTINGS = "generation.json"


@dataclass(frozen=True)
class GenerationConfig:
    steps: int = 8
    seed: int = 0  # added to every item's own seed
    batch_size: int = 64
    guidance_scale: float | None = None  # None: the pipeline's own default

    def __post_init__(self):
        problems = [f"{name} must be at least 1, got {getattr(self, name)}" for name in ("steps", "batch_size")
                    if getattr(self, name) < 1]
        if self.guidance_scale is not None and self.guidance_scale < 0:
            problems.append(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if problems:
            raise HpruneError("; ".join(problems) + ".")


@dataclass(frozen=True)
class Item:
    """One image to draw: prompt, own seed and, when known, the scene behind it (a dict)."""

    prompt: str
    seed: int
    scene: dict | None = None


def generate_images(pipe, prompts: list[str], seeds: list[int], cfg: GenerationConfig,
                    progress: bool = False) -> np.ndarray:
    """uint8 (N, H, W, 3) images; image i is drawn from seed cfg.seed + seeds[i]."""
    if len(prompts) != len(seeds):
        raise HpruneError(f"got {len(seeds)} seeds for {len(prompts)} prompts; pass one seed per prompt.")
    out = []
    starts = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(starts, desc="generate", unit="batch", disable=not progress):
        batch = slice(start, start + cfg.batch_size)
        out.append(pipe(prompts[batch], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                        seeds=[cfg.seed + s for s in seeds[batch]]).images)
    return np.concatenate(out)


def generate_to_dir(pipe, items: list[Item], out_dir: str | Path, cfg: GenerationConfig, model: str = "",
                    progress: bool = True) -> list[dict]:
    """Draw every item not yet in `out_dir`; returns all records of the folder, in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {"model": model, **asdict(cfg)})
    done = read_records(out)
    todo = [i for i in range(len(items)) if i not in done]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="generate", unit="img", disable=not progress)
    for start in range(0, len(todo), cfg.batch_size):
        chunk = todo[start : start + cfg.batch_size]
        seeds = [cfg.seed + items[i].seed for i in chunk]
        images = pipe([items[i].prompt for i in chunk], num_inference_steps=cfg.steps,
                      guidance_scale=cfg.guidance_scale, seeds=seeds).images
        records = [_write_image(out, i, items[i], seed, image) for i, seed, image in zip(chunk, seeds, images)]
        _append_records(out, records)
        done.update((r["index"], r) for r in records)
        bar.update(len(chunk))
    bar.close()
    return [done[i] for i in sorted(done)]


def save_grid(images: np.ndarray, path: str | Path, rows: int = 4, cols: int = 8, scale: int = 2) -> Path:
    """The first rows x cols images as one PNG contact sheet (upscaled, 2-pixel white gaps)."""
    n, h, w, _ = images.shape
    if n < rows * cols:
        raise HpruneError(f"a {rows}x{cols} grid needs {rows * cols} images, got {n}; generate more.")
    gap = 2
    sheet = np.full((rows * (h * scale + gap) + gap, cols * (w * scale + gap) + gap, 3), 255, np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        y, x = gap + r * (h * scale + gap), gap + c * (w * scale + gap)
        sheet[y : y + h * scale, x : x + w * scale] = images[i].repeat(scale, 0).repeat(scale, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return Path(path)


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            raise HpruneError(f"{out} holds generations made with other settings ({old}); "
                              "use a new --out folder or the same settings to resume.")
        return
    write_atomic(path, json.dumps(settings, indent=2).encode())


def _write_image(out: Path, index: int, item: Item, seed: int, image: np.ndarray) -> dict:
    name = f"{index:05d}.png"
    tmp = out / (name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, out / name)
    record = {"index": index, "prompt": item.prompt, "seed": seed, "path": name}
    if item.scene is not None:
        record["scene"] = item.scene
    return record


def _append_records(out: Path, records: list[dict]) -> None:
    path = out / LOG
    # A kill mid-write can leave a torn last line; start on a fresh one.
    torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a") as f:
        f.write("\n" if torn else "")
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def read_records(out: str | Path) -> dict[int, dict]:
    """index -> record of every complete line whose image exists (a torn last line is dropped)."""
    path = Path(out) / LOG
    return {r["index"]: r for r in read_jsonl(path) if (Path(out) / r["path"]).exists()}


