"""Exact renderer of the shapes world: a layout -> a 64x64 RGB uint8 image.

Every pixel takes one palette colour (no anti-aliasing), so a render is the
ground truth ShapesEval measures against. Shapes are tested at pixel centres
inside their square bounding box, so a shape looks the same wherever it
stands. Textures are anchored to the canvas, not the object: stripes and dots
are one global fabric that each shape cuts out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hprune.toy.world import (
    BACKGROUND_RGB,
    CANVAS,
    DARK_RGB,
    GLYPH_RGB,
    MAIN_RGB,
    PATTERN_RGB,
    SHAPES,
    Layout,
    Placed,
    Scene,
    realize,
)

# 5x7 digits, drawn at twice that size (strokes 2 pixels wide).
FONT = {
    0: (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
GLYPH_SCALE = 2
STRIPE_PERIOD = 4  # object stripes: 2 rows colour, 2 rows dark
DOT_PERIOD = 4  # object dots: 2x2 dark dots on a 4-pixel grid


@lru_cache(maxsize=None)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean (side, side) mask of a shape filling its bounding box."""
    c = (np.arange(side) + 0.5) / side - 0.5  # pixel centres in [-0.5, 0.5]
    y, x = np.meshgrid(c, c, indexing="ij")
    if shape == "circle":
        mask = x * x + y * y <= 0.25
    elif shape == "square":
        mask = np.ones((side, side), bool)
    elif shape == "triangle":  # apex up, base down
        mask = np.abs(x) <= (y + 0.5) / 2
    elif shape == "diamond":
        mask = np.abs(x) + np.abs(y) <= 0.5
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=None)
def glyph_mask(digit: int) -> np.ndarray:
    rows = np.array([[ch == "#" for ch in row] for row in FONT[digit]])
    mask = np.kron(rows, np.ones((GLYPH_SCALE, GLYPH_SCALE), bool))
    mask.setflags(write=False)
    return mask


def glyph_offset(side: int, digit: int) -> tuple[int, int]:
    """(row, col) of a digit's top-left corner inside an object's box: centred."""
    h, w = glyph_mask(digit).shape
    return (side - h) // 2, (side - w) // 2


@lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    """Canvas-anchored boolean (CANVAS, CANVAS) map: True where the pattern's dark part is."""
    y, x = np.mgrid[:CANVAS, :CANVAS]
    if name == "striped":  # object fill
        pattern = y % STRIPE_PERIOD >= STRIPE_PERIOD // 2
    elif name == "dotted":  # object fill
        pattern = (y % DOT_PERIOD < 2) & (x % DOT_PERIOD < 2)
    elif name == "bg-striped":  # diagonal lines, 2 of every 8 pixels
        pattern = (x + y) % 8 < 2
    elif name == "bg-checkered":  # 8-pixel checks
        pattern = (x // 8 + y // 8) % 2 == 1
    elif name in ("solid", "bg-plain"):
        pattern = np.zeros((CANVAS, CANVAS), bool)
    else:
        raise ValueError(f"unknown texture {name!r}")
    pattern.setflags(write=False)
    return pattern


def render(layout: Layout) -> np.ndarray:
    """The exact (CANVAS, CANVAS, 3) uint8 image of a layout."""
    image = np.empty((CANVAS, CANVAS, 3), np.uint8)
    image[:] = BACKGROUND_RGB
    image[texture("bg-" + layout.background)] = PATTERN_RGB
    for obj in layout.objects:
        _draw(image, obj)
    return image


def _draw(image: np.ndarray, obj: Placed) -> None:
    side = obj.side
    box = (slice(obj.y, obj.y + side), slice(obj.x, obj.x + side))
    mask = shape_mask(obj.shape, side)
    dark = texture(obj.fill)[box]
    region = image[box]
    region[mask & ~dark] = MAIN_RGB[obj.color]
    region[mask & dark] = DARK_RGB[obj.color]
    if obj.digit is not None:
        glyph = glyph_mask(obj.digit)
        r, c = glyph_offset(side, obj.digit)
        sub = region[r : r + glyph.shape[0], c : c + glyph.shape[1]]
        sub[glyph] = GLYPH_RGB[obj.digit_color]


def render_scene(scene: Scene, seed: int) -> np.ndarray:
    """Render one picture of a scene; the same seed gives the same picture."""
    return render(realize(scene, np.random.default_rng(seed)))
