"""Fixed train / validation / held-out test prompts of the shapes world.

Every prompt the grammar makes for a category is enumerated, shuffled with a
fixed seed and cut into three disjoint splits. The split files ship in
`toy/data/` and are the source of truth (a test checks they still equal what
`build_splits()` makes). The `test` split is held out: training and tuning
read `train` and `val` only (`sample_training_batch` refuses `test`).

An evaluation set gives every category the same number of images: the
category's prompts are cycled, each item with its own seed, so a category
with few held-out prompts still gets a stable mean.

Regenerate the files after changing the world: `python -m hprune.toy.splits --write`.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hprune.core.errors import HpruneError
from hprune.toy.prompts import PATTERNS, TEXTURED_FILLS, describe, parse
from hprune.toy.render import render
from hprune.toy.world import (
    CATEGORIES,
    COLORS,
    DIGITS,
    GLYPH_COLORS,
    GLYPH_SHAPES,
    MAX_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    Scene,
    realize,
)

SPLITS = ("train", "val", "test")
SPLIT_SEED = 20250605
DATA = Path(__file__).parent / "data"
TEST_CAP, VAL_CAP = 48, 24  # prompts per category
EVAL_PER_CATEGORY = 64  # images per category in an evaluation set

_SIZES = (None, *SIZES)
_COLORS = (None, *COLORS)


def enumerate_scenes(category: str) -> list[Scene]:
    """Every scene the grammar makes for a category, in a fixed order."""
    return list(_MAKERS[category]())


def _single():
    return (Scene("single_object", (ObjectSpec(s, size=z),)) for s in SHAPES for z in _SIZES)


def _colors():
    return (Scene("colors", (ObjectSpec(s, c, z),)) for c in COLORS for s in SHAPES for z in _SIZES)


def _counting():
    return (
        Scene("counting", (ObjectSpec(s, c),) * n) for n in range(1, MAX_OBJECTS + 1) for s in SHAPES for c in _COLORS
    )


def _two():
    pairs = itertools.permutations(SHAPES, 2)
    return (
        Scene("two_object", (ObjectSpec(a, size=za), ObjectSpec(b, size=zb)))
        for a, b in pairs
        for za, zb in itertools.product(_SIZES, _SIZES)
    )


def _color_attr():
    objs = [ObjectSpec(s, c) for c in COLORS for s in SHAPES]
    return (
        Scene("color_attr", (a, b)) for a, b in itertools.permutations(objs, 2) if a.color != b.color and a.shape != b.shape
    )


def _position():
    objs = [ObjectSpec(s, c) for c in _COLORS for s in SHAPES]
    return (
        Scene("position", (a, b), rel) for a, b in itertools.permutations(objs, 2) if a.shape != b.shape for rel in RELATIONS
    )


def _texture():
    fills, patterns = (None, *TEXTURED_FILLS), (None, *PATTERNS)
    return (
        Scene("texture", (ObjectSpec(s, c, fill=f),), background=p)
        for f in fills
        for p in patterns
        if f or p
        for c in COLORS
        for s in SHAPES
    )


def _glyph():
    return (
        Scene("glyph", (ObjectSpec(s, c, digit=d, digit_color=g),))
        for d in DIGITS
        for g in GLYPH_COLORS
        for c in COLORS
        for s in GLYPH_SHAPES
    )


_MAKERS = {
    "single_object": _single,
    "two_object": _two,
    "counting": _counting,
    "colors": _colors,
    "position": _position,
    "color_attr": _color_attr,
    "texture": _texture,
    "glyph": _glyph,
}


def build_splits(seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Prompts of each split, grouped by category in CATEGORIES order."""
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    rng = np.random.default_rng(seed)
    for category in CATEGORIES:
        prompts = [describe(s) for s in enumerate_scenes(category)]
        order = rng.permutation(len(prompts))
        n = len(prompts)
        n_test = min(TEST_CAP, max(2, round(0.2 * n)))
        n_val = min(VAL_CAP, max(1, round(0.1 * n)))
        shuffled = [prompts[i] for i in order]
        out["test"] += shuffled[:n_test]
        out["val"] += shuffled[n_test : n_test + n_val]
        out["train"] += shuffled[n_test + n_val :]
    return out


@lru_cache(maxsize=None)
def load_split(name: str) -> tuple[str, ...]:
    """The shipped prompts of a split."""
    if name not in SPLITS:
        raise HpruneError(f"split must be one of {SPLITS}, got {name!r}.")
    return tuple((DATA / f"{name}.txt").read_text().splitlines())


@lru_cache(maxsize=None)
def prompts_by_category(name: str) -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for prompt in load_split(name):
        groups[parse(prompt).category].append(prompt)
    return {c: tuple(p) for c, p in groups.items()}


@dataclass(frozen=True)
class EvalItem:
    prompt: str
    category: str
    seed: int


def eval_set(split: str = "test", per_category: int = EVAL_PER_CATEGORY) -> list[EvalItem]:
    """`per_category` items for each category: its prompts cycled, one seed per item."""
    items = []
    for c_index, (category, prompts) in enumerate(prompts_by_category(split).items()):
        for i in range(per_category):
            items.append(EvalItem(prompts[i % len(prompts)], category, 10_000 * c_index + i))
    return items


def sample_training_batch(rng: np.random.Generator, n: int, split: str = "train"):
    """(prompts, uint8 images (n, 64, 64, 3), scenes): category uniform, then prompt, then layout."""
    if split == "test":
        raise HpruneError("the test split is held out: train and tune on 'train' or 'val'.")
    groups = prompts_by_category(split)
    prompts, images, scenes = [], [], []
    for _ in range(n):
        category_prompts = groups[CATEGORIES[rng.integers(len(CATEGORIES))]]
        prompt = category_prompts[rng.integers(len(category_prompts))]
        scene = parse(prompt)
        prompts.append(prompt)
        scenes.append(scene)
        images.append(render(realize(scene, rng)))
    return prompts, np.stack(images), scenes


def write_splits() -> None:
    DATA.mkdir(exist_ok=True)
    for name, prompts in build_splits().items():
        (DATA / f"{name}.txt").write_text("\n".join(prompts) + "\n")
        print(f"{name}: {len(prompts)} prompts -> {DATA / name}.txt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the shipped split files")
    if parser.parse_args().write:
        write_splits()
