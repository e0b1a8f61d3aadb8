"""Read a shapes-world image back into objects: colour, shape, size, fill, digit.

Whether a pixel is coloured at all is decided by its nearest palette colour
in RGB, so a soft edge is cut halfway between object and background. Which
colour it is, is decided by hue, not by nearest RGB: mixing a colour with a
neutral (the grey background, a white or black digit) or with its own dark
shade keeps its hue, so soft fringes and textured fills stay in their
object's colour family. Other pixels are neutrals (background, background
pattern, white, black), told apart by value.

Objects are the connected components of each colour family, holes filled (a
digit is a hole); a component inside another object is part of it, not an
object. Shape is the template (rendered by the world's own renderer) that
best overlaps the component's mask scaled to a common box; size is the box's
side; fill is read from the dark-shade pixels; a digit is the best-overlapping
glyph template. Everything here is deterministic numpy/scipy.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from hprune.core.errors import HpruneError
from hprune.toy.render import DOT_PERIOD, STRIPE_PERIOD, glyph_mask, shape_mask, texture
from hprune.toy.world import (
    BACKGROUND_RGB,
    CANVAS,
    COLORS,
    DARK_RGB,
    DIGITS,
    GLYPH_RGB,
    MAIN_RGB,
    PATTERN_RGB,
    SHAPES,
    SIZE_PX,
)

# Pixel classes: neutrals first, then (main, dark) of each colour.
NEUTRALS = ("background", "pattern", "white", "black")
NEUTRAL_V = np.array([BACKGROUND_RGB[0], PATTERN_RGB[0], GLYPH_RGB["white"][0], GLYPH_RGB["black"][0]], float)
PATTERN = NEUTRALS.index("pattern")
FAMILY_HUE = np.array([colorsys.rgb_to_hsv(*MAIN_RGB[c])[0] * 360 for c in COLORS])
# Main and dark shade of a colour differ in value by 2x: split at the geometric mean.
FAMILY_V_SPLIT = np.array([np.sqrt(max(MAIN_RGB[c]) * max(DARK_RGB[c])) for c in COLORS])
MIN_CHROMA = 32  # below this max-min spread a pixel is a neutral
PALETTE = np.array(
    [BACKGROUND_RGB, PATTERN_RGB, GLYPH_RGB["white"], GLYPH_RGB["black"]]
    + [rgb for c in COLORS for rgb in (MAIN_RGB[c], DARK_RGB[c])],
    np.float32,
)  # in pixel-class order
_PALETTE_SQ = (PALETTE**2).sum(-1)

MIN_AREA = 30  # smallest object, in pixels (a small circle has ~150)
NESTED = 0.5  # a component with this share inside another object's silhouette belongs to it
TEMPLATE = 32  # shape templates are compared at this box size
SIZE_SPLIT = (SIZE_PX["small"] + SIZE_PX["large"]) / 2
MIN_GLYPH = 15  # glyph pixels needed to read a digit
MIN_GLYPH_IOU = 0.4
GLYPH_SHIFT = 2  # a digit may sit this many pixels off the object's centre
PLAIN_MAX_PATTERN = 0.08  # pattern share of the background below which it is plain
MIN_PATTERN_MATCH = 0.7


@dataclass
class Found:
    """One object read from an image."""

    color: str
    shape: str
    size: str
    fill: str
    digit: int | None
    digit_color: str | None
    center: tuple[float, float]  # (x, y)
    side: int
    area: int
    mask: np.ndarray = field(repr=False)  # silhouette, holes filled, full canvas
    glyph: np.ndarray = field(repr=False)  # digit pixels, full canvas
    fill_pattern: np.ndarray = field(repr=False)  # where the fill's dark shade should be (best phase)


@dataclass
class Reading:
    """Everything read from one image."""

    objects: list[Found]
    background: str  # plain | striped | checkered | unknown
    background_pattern: np.ndarray = field(repr=False)  # the best-matching ideal pattern map
    labels: np.ndarray = field(repr=False)  # pixel class: 0-3 neutrals, 4 + 2*family + (0 main | 1 dark)
    nearest: np.ndarray = field(repr=False)  # index of the nearest palette colour (PALETTE order)
    distance: np.ndarray = field(repr=False)  # RGB distance to it


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.shape != (CANVAS, CANVAS, 3):
        raise HpruneError(f"ShapesEval reads {CANVAS}x{CANVAS} RGB images, got an array of shape {image.shape}.")
    if image.dtype != np.uint8:
        raise HpruneError(f"ShapesEval reads uint8 images (0-255), got {image.dtype}.")
    return image


def nearest_palette(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest palette colour, RGB distance to it) per pixel."""
    rgb = image.astype(np.float32)
    d2 = (rgb**2).sum(-1, keepdims=True) - 2 * rgb @ PALETTE.T + _PALETTE_SQ
    index = d2.argmin(-1)
    return index, np.sqrt(np.maximum(np.take_along_axis(d2, index[..., None], -1)[..., 0], 0))


def classify_pixels(image: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Pixel classes (H, W): neutrals 0-3, colour f main 4 + 2f, dark 5 + 2f.

    Whether a pixel is coloured at all is decided by its nearest palette
    colour (`nearest`, from `nearest_palette`), so a soft edge is cut halfway
    between object and background; which colour, by hue; main or dark shade,
    by value.
    """
    rgb = image.astype(np.float32)
    vmax, vmin = rgb.max(-1), rgb.min(-1)
    chroma = vmax - vmin
    labels = np.abs(vmax[..., None] - NEUTRAL_V).argmin(-1)
    coloured = (nearest >= len(NEUTRALS)) & (chroma >= MIN_CHROMA)
    hue = _hue(rgb, vmax, chroma)
    gap = np.abs(hue[..., None] - FAMILY_HUE)
    family = np.minimum(gap, 360 - gap).argmin(-1)
    dark = vmax < FAMILY_V_SPLIT[family]
    labels[coloured] = (4 + 2 * family + dark)[coloured]
    return labels


def _hue(rgb: np.ndarray, vmax: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    c = np.maximum(chroma, 1e-6)
    hue = np.where(vmax == r, ((g - b) / c) % 6, np.where(vmax == g, (b - r) / c + 2, (r - g) / c + 4))
    return hue * 60


def read_image(image: np.ndarray) -> Reading:
    image = check_image(image)
    nearest, distance = nearest_palette(image)
    labels = classify_pixels(image, nearest)
    candidates = []
    for f in range(len(COLORS)):
        candidates += _components(labels, f)
    objects = [_describe(labels, image, f, comp, filled) for f, comp, filled in _drop_nested(candidates)]
    background, pattern = _read_background(labels, objects)
    return Reading(objects, background, pattern, labels, nearest, distance)


def _components(labels: np.ndarray, family: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    member = (labels == 4 + 2 * family) | (labels == 5 + 2 * family)
    comps, n = ndimage.label(member, structure=np.ones((3, 3)))
    if n == 0:
        return []
    areas = np.bincount(comps.ravel())
    out = []
    for i in np.flatnonzero(areas >= MIN_AREA):
        if i == 0:
            continue
        comp = comps == i
        out.append((family, comp, ndimage.binary_fill_holes(comp)))
    return out


def _drop_nested(candidates):
    """Components lying mostly inside a larger object's silhouette are part of it."""
    keep = []
    for i, (f, comp, filled) in enumerate(candidates):
        area = comp.sum()
        inside = any(
            j != i and other.sum() > filled.sum() and (comp & other).sum() > NESTED * area
            for j, (_, _, other) in enumerate(candidates)
        )
        if not inside:
            keep.append((f, comp, filled))
    return keep


def _describe(labels: np.ndarray, image: np.ndarray, family: int, comp: np.ndarray, filled: np.ndarray) -> Found:
    ys, xs = np.nonzero(filled)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(max(y1 - y0, x1 - x0))
    shape = classify_shape(filled[y0:y1, x0:x1])
    dark = labels == 5 + 2 * family
    fill, fill_pattern = read_fill(dark, interior(filled))
    digit = digit_color = None
    glyph = np.zeros_like(filled)
    if fill == "solid":
        # A digit is whatever is not the object's main colour inside it: a black
        # stroke softened into the colour reads as its dark shade.
        digit, digit_color = _read_glyph(filled & (labels != 4 + 2 * family), image, (y0, y1, x0, x1))
        if digit is not None:
            glyph = filled & (labels != 4 + 2 * family)
    return Found(
        color=COLORS[family],
        shape=shape,
        size="small" if side < SIZE_SPLIT else "large",
        fill=fill,
        digit=digit,
        digit_color=digit_color,
        center=((x0 + x1) / 2, (y0 + y1) / 2),
        side=side,
        area=int(filled.sum()),
        mask=filled,
        glyph=glyph,
        fill_pattern=fill_pattern,
    )


_TEMPLATES = np.stack([shape_mask(s, TEMPLATE) for s in SHAPES])


def classify_shape(box_mask: np.ndarray) -> str:
    """The template with the highest IoU against a mask cropped to its bounding box."""
    h, w = box_mask.shape
    rows = ((np.arange(TEMPLATE) + 0.5) * h / TEMPLATE).astype(int)
    cols = ((np.arange(TEMPLATE) + 0.5) * w / TEMPLATE).astype(int)
    scaled = box_mask[rows][:, cols]
    inter = (_TEMPLATES & scaled).sum((1, 2))
    union = (_TEMPLATES | scaled).sum((1, 2))
    iou = inter / np.maximum(union, 1)
    return SHAPES[int(iou.argmax())]


def _read_glyph(glyph: np.ndarray, image: np.ndarray, box) -> tuple[int | None, str | None]:
    if glyph.sum() < MIN_GLYPH:
        return None, None
    y0, y1, x0, x1 = box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    best, best_iou = None, MIN_GLYPH_IOU
    for digit in DIGITS:
        iou = _glyph_iou(glyph, glyph_mask(digit), cy, cx)
        if iou > best_iou:
            best, best_iou = digit, iou
    if best is None:
        return None, None
    value = image[glyph].max(-1).mean()
    white, black = GLYPH_RGB["white"][0], GLYPH_RGB["black"][0]
    return best, "white" if abs(value - white) < abs(value - black) else "black"


def _glyph_iou(glyph: np.ndarray, template: np.ndarray, cy: float, cx: float) -> float:
    """Best IoU of a digit template centred near (cy, cx) with the glyph pixels."""
    h, w = template.shape
    top, left = int(round(cy - h / 2)), int(round(cx - w / 2))
    best = 0.0
    for dy in range(-GLYPH_SHIFT, GLYPH_SHIFT + 1):
        for dx in range(-GLYPH_SHIFT, GLYPH_SHIFT + 1):
            placed = np.zeros_like(glyph)
            r, c = top + dy, left + dx
            if r < 0 or c < 0 or r + h > CANVAS or c + w > CANVAS:
                continue
            placed[r : r + h, c : c + w] = template
            best = max(best, (placed & glyph).sum() / (placed | glyph).sum())
    return best


def interior(filled: np.ndarray, glyph: np.ndarray | None = None) -> np.ndarray:
    """An object's pixels away from its edge and its digit (where texture is read)."""
    inner = ndimage.binary_erosion(filled)
    if glyph is None or not glyph.any():
        return inner
    return inner & ~ndimage.binary_dilation(glyph, iterations=2)


# Background patterns, at every shift of their period (the world anchors them
# at one phase; a picture at another phase still shows that pattern).
def _shifted(name: str, period: int) -> np.ndarray:
    base = np.tile(texture(name), (2, 2))
    return np.stack([base[dy : dy + CANVAS, dx : dx + CANVAS] for dy in range(period) for dx in range(period)])


_BG_PATTERNS = {"striped": _shifted("bg-striped", 8), "checkered": _shifted("bg-checkered", 16)}
_FILLS = {"striped": _shifted("striped", STRIPE_PERIOD), "dotted": _shifted("dotted", DOT_PERIOD)}


def _best_pattern(patterns: dict[str, np.ndarray], seen: np.ndarray, region: np.ndarray,
                  best: str, best_match: float, best_map: np.ndarray) -> tuple[str, np.ndarray]:
    """The pattern (at its best phase) whose map agrees with `seen` on more of `region` than
    `best_match`, and that map; `best` and `best_map` if none does."""
    for name, stack in patterns.items():
        match = (stack[:, region] == seen[region]).mean(1)
        i = int(match.argmax())
        if match[i] > best_match:
            best, best_match, best_map = name, match[i], stack[i]
    return best, best_map


def read_fill(dark: np.ndarray, inner: np.ndarray) -> tuple[str, np.ndarray]:
    """The fill whose ideal dark-shade map (at its best phase) agrees with most interior pixels.

    Returns the fill and that map; solid's map is empty.
    """
    if not inner.any():
        return "solid", np.zeros_like(dark)
    return _best_pattern(_FILLS, dark, inner, "solid", 1.0 - dark[inner].mean(), np.zeros_like(dark))


def _read_background(labels: np.ndarray, objects: list[Found]) -> tuple[str, np.ndarray]:
    region = labels < 4
    for obj in objects:
        region &= ~ndimage.binary_dilation(obj.mask, iterations=2)
    is_pattern = labels == PATTERN
    plain = np.zeros((CANVAS, CANVAS), bool)
    if region.sum() == 0 or is_pattern[region].mean() < PLAIN_MAX_PATTERN:
        return "plain", plain
    return _best_pattern(_BG_PATTERNS, is_pattern, region, "unknown", MIN_PATTERN_MATCH, plain)


