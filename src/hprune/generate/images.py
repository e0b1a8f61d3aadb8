"""Batched generation: prompts -> images, in memory or into a folder.

Shapes teachers and diffusers SD3/FLUX pipelines (pruned ones loaded by
hprune.load_pipeline, which take block indices of the original model) draw through
hprune.model.sampling, the one loop every stage draws with. Each image is drawn
from its own seed alone (ShapesPipeline.initial_noise; one torch.Generator per
image for diffusers): an item's seed plus the run's seed offset. Results do not depend on the batch size, on batch order or on a resume.
A generation folder holds `00000.png ...`, `generations.jsonl` (one line per
image: index, prompt, seed, path, and the scene when known) and
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

from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl, write_atomic
from hprune.model.sampling import PromptSeed, SamplingConfig, check_size, is_diffusers, make_sampler

LOG = "generations.jsonl"
SETTINGS = "generation.json"


@dataclass(frozen=True)
class GenerationConfig:
    steps: int = 8
    seed: int = 0  # added to every item's own seed
    batch_size: int = 64
    guidance_scale: float | None = None  # None: the pipeline's own default (diffusers pipelines: 0)
    # diffusers pipelines only; left at their defaults, they stay out of generation.json
    size: int | None = None  # image side; None: the pipeline's default
    max_sequence_length: int | None = None  # text tokens; None: the pipeline's default, at most 256 (SD3) / 512 (FLUX)
    skip_layers: tuple[int, ...] = ()  # SD3 skip-layer guidance: block indices of the original model
    loras: tuple[str, ...] = ()  # LoRA files made for the original model (load_loras loads them)

    def __post_init__(self):
        problems = [f"{name} must be at least 1, got {getattr(self, name)}"
                    for name in ("steps", "batch_size", "size", "max_sequence_length")
                    if getattr(self, name) is not None and getattr(self, name) < 1]
        if self.guidance_scale is not None and self.guidance_scale < 0:
            problems.append(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if problems:
            raise HpruneError("; ".join(problems) + ".")

    def settings(self) -> dict:
        """What generation.json records and a resume must match (the diffusers-only fields only
        when set, so that folders written before they existed still resume)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if k not in DIFFUSERS_ONLY or v not in (None, ())}


DIFFUSERS_ONLY = {"size": "--size", "max_sequence_length": "--max-sequence-length", "skip_layers": "--skip-layers",
                  "loras": "--lora"}
SKIP_LAYER_WINDOW = (0.01, 0.2)  # StableDiffusion3Pipeline's skip_layer_guidance_start / _stop defaults


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
        out.append(_draw(pipe, prompts[batch], [cfg.seed + s for s in seeds[batch]], cfg))
    return np.concatenate(out)


def generate_to_dir(pipe, items: list[Item], out_dir: str | Path, cfg: GenerationConfig, model: str = "",
                    progress: bool = True) -> list[dict]:
    """Draw every item not yet in `out_dir`; returns all records of the folder, in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {"model": model, **cfg.settings()})
    done = read_records(out)
    todo = [i for i in range(len(items)) if i not in done]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="generate", unit="img", disable=not progress)
    for start in range(0, len(todo), cfg.batch_size):
        chunk = todo[start : start + cfg.batch_size]
        seeds = [cfg.seed + items[i].seed for i in chunk]
        images = _draw(pipe, [items[i].prompt for i in chunk], seeds, cfg)
        records = [_write_image(out, i, items[i], seed, image) for i, seed, image in zip(chunk, seeds, images)]
        _append_records(out, records)
        done.update((r["index"], r) for r in records)
        bar.update(len(chunk))
    bar.close()
    return [done[i] for i in sorted(done)]


def _draw(pipe, prompts: list[str], seeds: list[int], cfg: GenerationConfig) -> np.ndarray:
    """uint8 (N, H, W, 3) images of one batch; `seeds` are final (the run's offset added)."""
    extra = {"skip_guidance_layers": list(cfg.skip_layers)} if cfg.skip_layers else None
    # one sampler per batch: only this batch's prompt embeddings are held
    items = [PromptSeed(p, s) for p, s in zip(prompts, seeds)]
    return make_sampler(pipe, _sampling(cfg), items, extra).images()


def _sampling(cfg: GenerationConfig) -> SamplingConfig:
    return SamplingConfig(steps=cfg.steps, guidance=cfg.guidance_scale, size=cfg.size,
                          max_sequence_length=cfg.max_sequence_length, batch_size=cfg.batch_size)


def check_fits(pipe, cfg: GenerationConfig) -> None:
    """Before anything is drawn: every option of `cfg` fits `pipe`; raises HpruneError naming the one that does not."""
    if not is_diffusers(pipe):
        given = [flag for name, flag in DIFFUSERS_ONLY.items() if getattr(cfg, name) not in (None, ())]
        if given:
            raise HpruneError(f"{', '.join(given)} apply to diffusers SD3/FLUX pipelines only; a shapes teacher draws "
                              f"64x64 images with its own text encoder: leave {' and '.join(given)} out.")
        return
    check_size(pipe, cfg.size)
    if cfg.skip_layers:
        _check_skip_layers(pipe, cfg)


def _check_skip_layers(pipe, cfg: GenerationConfig) -> None:
    from hprune.model import get_adapter
    from hprune.model.original_indices import translate_layers

    if get_adapter(pipe.transformer).family == "flux":
        raise HpruneError("FLUX pipelines have no skip-layer guidance (diffusers' skip_guidance_layers is SD3's); "
                          "leave out --skip-layers.")
    if (cfg.guidance_scale or 0) <= 1:
        raise HpruneError("--skip-layers acts only with classifier-free guidance; pass --guidance above 1 (e.g. 4.5).")
    if not _skip_layer_steps(cfg.steps):
        least = next(n for n in range(1, 1000) if _skip_layer_steps(n))
        start, stop = SKIP_LAYER_WINDOW
        raise HpruneError(f"with --steps {cfg.steps} skip-layer guidance acts on no step (diffusers applies it between "
                          f"{start:.0%} and {stop:.0%} of the steps); pass --steps {least} or more.")
    translate_layers(pipe.transformer, cfg.skip_layers)  # an index the original model never had: one sentence


def _skip_layer_steps(steps: int) -> list[int]:
    """The steps on which StableDiffusion3Pipeline applies skip-layer guidance (its default window)."""
    start, stop = SKIP_LAYER_WINDOW
    return [i for i in range(steps) if start * steps < i < stop * steps]


def load_loras(pipe, paths) -> None:
    """Load LoRA files made for the original (unpruned) model into `pipe`, all active at weight 1.
    A pruned pipeline from hprune.load_pipeline translates their block indices to its own."""
    from safetensors import SafetensorError

    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise HpruneError(f"LoRA file {', '.join(missing)} does not exist; pass a .safetensors file "
                          "(as diffusers' save_lora_weights or peft writes it).")
    names = [f"lora_{i}" for i in range(len(paths))]
    for path, name in zip(paths, names):
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        except (ValueError, KeyError, OSError, SafetensorError) as err:
            raise HpruneError(f"could not load the LoRA {path} ({err}); pass a LoRA .safetensors made for "
                              "this model (diffusers, peft or kohya layout).") from None
    if names:
        pipe.set_adapters(names)


GRID_ROWS, GRID_COLS = 4, 8  # the sample grid of `hprune generate --grid`


def save_grid(images: np.ndarray, path: str | Path, rows: int = GRID_ROWS, cols: int = GRID_COLS, scale: int = 2) -> Path:
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


def write_generation(out: str | Path, items: list[Item], seeds: list[int], images: np.ndarray, settings: dict) -> list[dict]:
    """Write images drawn elsewhere as a generation folder (the format `hprune generate`,
    `hprune eval` and `hprune study` read); returns the records."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    records = [_write_image(out, i, item, seed, image) for i, (item, seed, image) in enumerate(zip(items, seeds, images))]
    _append_records(out, records)
    return records


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


