"""`hprune generate`: images from prompts with a (pruned) shapes teacher or diffusers SD3/FLUX pipeline.

    hprune generate --model shapes-sd3 --split test --steps 8 --seed 0 --out runs/gen
    hprune generate --model runs/pruned --prompts prompts.txt --out runs/gen
    hprune generate --model sd35-pruned --prompts prompts.txt --size 1024 --steps 28 --guidance 4.5 \
        --lora style.safetensors --skip-layers 7,8,9 --out runs/gen

`--lora` and `--skip-layers` name blocks as the original (unpruned) model did; the
pipeline hprune.load_pipeline returns for a pruned folder translates them.
Writes one PNG per prompt, `generations.jsonl` (prompt, seed, path, scene) and
`generation.json`; re-running the same command resumes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from hprune.core.cuda import AUTO, DEVICE_HELP, resolve_device
from hprune.core.errors import HpruneError
from hprune.model.sampling import FEW_STEPS  # diffusers pipelines: few-step models, as in `hprune profile`
from hprune.generate.images import (
    GRID_COLS, GRID_ROWS, GenerationConfig, Item, check_fits, generate_to_dir, is_diffusers, load_loras, save_grid,
)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="shapes-sd3, shapes-flux, or a pipeline folder (shapes, or diffusers SD3/SD3.5/FLUX, pruned or not)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="a .txt file (one prompt a line) or .jsonl ({\"prompt\": ...}, optional \"seed\"; "
                                          "for shapes teachers also scene dicts)")
    source.add_argument("--split", choices=("train", "val", "test"),
                        help="shapes teachers: a split's evaluation set (equal images per category, fixed seeds)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (a split's categories are interleaved)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"sampling steps (default: {GenerationConfig.steps} for shapes teachers, "
                             f"{FEW_STEPS} for diffusers pipelines)")
    parser.add_argument("--seed", type=int, default=GenerationConfig.seed, help="added to each image's own seed (a split item's fixed seed, or a prompt file's line index)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale (default: a shapes teacher's own; 0 for diffusers pipelines)")
    parser.add_argument("--size", type=int, default=None, help="diffusers pipelines: image side in pixels (default: the pipeline's)")
    parser.add_argument("--max-sequence-length", type=int, default=None,
                        help="diffusers pipelines: text tokens (default: the pipeline's, at most 256 SD3 / 512 FLUX)")
    parser.add_argument("--lora", action="append", default=[], metavar="FILE",
                        help="a LoRA .safetensors trained on the original (unpruned) model; repeatable, all at weight 1")
    parser.add_argument("--skip-layers", default=None, metavar="I,J,...",
                        help="SD3 skip-layer guidance on these blocks, numbered as in the original model "
                             "(e.g. 7,8,9 for SD3.5 Medium); needs --guidance above 1 and --steps 6 or more")
    parser.add_argument("--batch-size", type=int, default=GenerationConfig.batch_size, help="images per pipeline call")
    parser.add_argument("--device", default=AUTO, type=resolve_device, help=DEVICE_HELP)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--grid", default=None,
                        help=f"also save the first {GRID_ROWS * GRID_COLS} images as a {GRID_ROWS}x{GRID_COLS} "
                             "sample grid PNG here")
    parser.add_argument("--compile", action="store_true",
                        help="compile each transformer block (torch.compile, every block shape of a pruned model); "
                             "the first batch waits for compilation, the rest run faster (on a GPU)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="CUDA GPU only: replay each transformer step from a CUDA graph captured on its first "
                             "call (one per batch shape); with --compile, the fastest path (docs/benchmarks.md)")


def run(args) -> int:
    import torch

    from hprune.folders import load_pipeline

    cfg = config_from(args)  # numbers and --skip-layers checked before the model loads
    if args.prompts is not None:
        check_prompt_file(Path(args.prompts))
    if args.grid:
        check_grid(args.prompts, args.split, args.limit)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.cuda_graph and not str(device).startswith("cuda"):
        raise HpruneError(f"--cuda-graph needs a CUDA GPU and this run is on {device}; drop --cuda-graph.")
    pipe = load_pipeline(args.model, torch_dtype=torch.bfloat16 if device == "cuda" else torch.float32, device=device)
    diffusers = is_diffusers(pipe)
    if diffusers and args.split is not None:
        raise HpruneError("--split draws the shapes testbed's prompts, for shapes teachers only; "
                          "pass --prompts FILE (one prompt a line) for a diffusers pipeline.")
    if diffusers and args.steps is None:
        cfg = replace(cfg, steps=FEW_STEPS)
    check_fits(pipe, cfg)
    items = load_items(args.prompts, args.split, args.limit, shapes=not diffusers)
    load_loras(pipe, cfg.loras)
    speed_up(pipe.transformer, args.compile, args.cuda_graph)  # after the LoRAs: graphs keep the weights they saw
    records = generate_to_dir(pipe, items, args.out, cfg, model=str(args.model))
    print(f"{len(records)} images in {args.out} ({Path(args.out) / 'generations.jsonl'})")
    if args.grid:
        images = np.stack([np.asarray(Image.open(Path(args.out) / r["path"]).convert("RGB")) for r in records[:32]])
        print(f"sample grid: {save_grid(images, args.grid, scale=1 if diffusers else 2)}")
    return 0


def speed_up(transformer, compile: bool, cuda_graph: bool) -> None:
    """The fast inference path hprune bench measures: regional compilation, then whole-step CUDA graphs."""
    from hprune.model.compile import compile_blocks_, shapes_line
    from hprune.model.cuda_graph import enable_cuda_graphs

    if compile:
        print(f"compiling each block ({shapes_line(compile_blocks_(transformer, dynamic=False))})")
    if cuda_graph:
        enable_cuda_graphs(transformer)


def config_from(args) -> GenerationConfig:
    """The settings the arguments give (steps: the shapes default until the pipeline is known)."""
    return GenerationConfig(steps=GenerationConfig.steps if args.steps is None else args.steps, seed=args.seed,
                            batch_size=args.batch_size, guidance_scale=args.guidance, size=args.size,
                            max_sequence_length=args.max_sequence_length, skip_layers=parse_layers(args.skip_layers),
                            loras=tuple(args.lora))


def parse_layers(text: str | None) -> tuple[int, ...]:
    """`7,8,9` -> (7, 8, 9)."""
    if text is None:
        return ()
    try:
        layers = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        layers = ()
    if not layers:
        raise HpruneError(f"--skip-layers takes block indices separated by commas (e.g. 7,8,9), got {text!r}.")
    return layers


def load_items(prompts_file: str | None, split: str | None, limit: int | None, shapes: bool = True) -> list[Item]:
    """Prompts with their seeds (and, for shapes teachers, scenes): a split's evaluation set,
    a scenes JSONL, or a text file; for diffusers pipelines (`shapes=False`) any prompt text."""
    if limit is not None and limit < 1:
        raise HpruneError(f"--limit must be at least 1, got {limit}.")
    if split is not None:
        items = split_items(split)
    else:
        items = file_items(Path(prompts_file)) if shapes else text_items(Path(prompts_file))
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


def check_grid(prompts_file: str | None, split: str | None, limit: int | None) -> None:
    """--grid needs GRID_ROWS x GRID_COLS images: refused before the model loads, from the
    number of prompts (a split's evaluation set, or a prompt file's non-empty lines)."""
    if split is not None:
        count = len(split_items(split))
    else:
        count = sum(1 for line in Path(prompts_file).read_text().splitlines() if line.strip())
    count = count if limit is None else min(count, limit)
    if count < GRID_ROWS * GRID_COLS:
        raise HpruneError(f"--grid lays out {GRID_ROWS * GRID_COLS} images and this run draws {count}; "
                          "raise --limit or pass more prompts, or drop --grid.")


def check_prompt_file(path: Path) -> None:
    if not path.is_file():
        raise HpruneError(f"prompt file {path} does not exist; pass a .txt or .jsonl file.")


def text_items(path: Path) -> list[Item]:
    """Prompts for a diffusers pipeline: a .txt file (one prompt a line; item i gets seed i) or
    .jsonl ({"prompt": ...}, with an optional "seed")."""
    check_prompt_file(path)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return [Item(line, i) for i, line in enumerate(lines)]
    items = []
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
            items.append(Item(str(data["prompt"]), int(data.get("seed", number - 1))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise HpruneError(f"{path} line {number} is not {{\"prompt\": ...}} (with an optional integer \"seed\"); "
                              "fix that line.") from None
    return items


def file_items(path: Path) -> list[Item]:
    """A .txt file (one prompt a line) or .jsonl (scene dicts or {"prompt": ...}); item i gets seed i."""
    from hprune.toy.prompts import describe, parse
    from hprune.toy.world import Scene

    check_prompt_file(path)
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
