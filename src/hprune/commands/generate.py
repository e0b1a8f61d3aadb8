"""`hprune generate`: images from prompts with a (pruned) shapes pipeline.

    hprune generate --model shapes-sd3 --split test --steps 8 --seed 0 --out runs/gen
    hprune generate --model runs/pruned --prompts prompts.txt --out runs/gen

Writes one PNG per prompt, `generations.jsonl` (prompt, seed, path, scene) and
`generation.json`; re-running the same command resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hprune.cuda import AUTO, DEVICE_HELP, avoid_cudnn_attention, resolve_device
from hprune.errors import HpruneError
from hprune.generate import GenerationConfig, Item, generate_to_dir, save_grid


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="shapes-sd3, shapes-flux, or a pipeline folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="a .txt file (one prompt a line) or .jsonl (scene dicts or {\"prompt\": ...})")
    source.add_argument("--split", choices=("train", "val", "test"), help="a split's evaluation set (equal images per category, fixed seeds)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (a split's categories are interleaved)")
    parser.add_argument("--steps", type=int, default=GenerationConfig.steps, help="sampling steps")
    parser.add_argument("--seed", type=int, default=GenerationConfig.seed, help="added to each image's own seed (a split item's fixed seed, or a prompt file's line index)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=GenerationConfig.batch_size, help="images per pipeline call")
    parser.add_argument("--device", default=AUTO, type=resolve_device, help=DEVICE_HELP)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--grid", default=None, help="also save the first 32 images as a 4x8 sample grid PNG here")


def run(args) -> int:
    import torch

    from hprune.folders import load_pipeline

    cfg = GenerationConfig(steps=args.steps, seed=args.seed, batch_size=args.batch_size, guidance_scale=args.guidance)
    items = load_items(args.prompts, args.split, args.limit)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    avoid_cudnn_attention()
    pipe = load_pipeline(args.model, torch_dtype=torch.bfloat16 if device == "cuda" else torch.float32, device=device)
    records = generate_to_dir(pipe, items, args.out, cfg, model=str(args.model))
    print(f"{len(records)} images in {args.out} ({Path(args.out) / 'generations.jsonl'})")
    if args.grid:
        images = np.stack([np.asarray(Image.open(Path(args.out) / r["path"]).convert("RGB")) for r in records[:32]])
        print(f"sample grid: {save_grid(images, args.grid)}")
    return 0


def load_items(prompts_file: str | None, split: str | None, limit: int | None) -> list[Item]:
    """Prompts with their scenes and seeds: a split's evaluation set, a scenes JSONL, or a text file."""
    if limit is not None and limit < 1:
        raise HpruneError(f"--limit must be at least 1, got {limit}.")
    items = split_items(split) if split is not None else file_items(Path(prompts_file))
    if not items:
        raise HpruneError("no prompts to generate; check --prompts or --split.")
    return items[:limit]


def split_items(split: str) -> list[Item]:
    """The split's evaluation set (equal images per category, each with its seed), categories
    interleaved so that --limit N still covers every category."""
    from hprune.toy.prompts import parse
    from hprune.toy.splits import eval_set

    if split not in ("train", "val", "test"):
        raise HpruneError(f"--split must be train, val or test, got {split!r}.")
    entries = eval_set(split)
    rank = {}
    order = []
    for entry in entries:
        rank[entry.category] = rank.get(entry.category, -1) + 1
        order.append((rank[entry.category], len(order)))
    return [Item(entries[i].prompt, entries[i].seed, parse(entries[i].prompt).to_dict()) for _, i in sorted(order)]


def file_items(path: Path) -> list[Item]:
    """A .txt file (one prompt a line) or .jsonl (scene dicts or {"prompt": ...}); item i gets seed i."""
    from hprune.toy.prompts import describe, parse
    from hprune.toy.world import Scene

    if not path.is_file():
        raise HpruneError(f"prompt file {path} does not exist; pass a .txt or .jsonl file.")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    scenes = []
    for number, line in enumerate(lines, 1):
        if path.suffix != ".jsonl":
            scenes.append(parse(line))
            continue
        try:
            data = json.loads(line)
            scenes.append(Scene.from_dict(data) if "objects" in data else parse(data["prompt"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise HpruneError(f"{path} line {number} is neither a scene dict nor {{\"prompt\": ...}}; fix that line.")
    return [Item(describe(scene), i, scene.to_dict()) for i, scene in enumerate(scenes)]
