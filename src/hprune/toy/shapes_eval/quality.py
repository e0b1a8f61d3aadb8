"""Image quality in [0, 1]: the testbed's stand-in for HPSv2.

Four parts, each 1.0 on an exact render, equally weighted:

- purity: how close each pixel is to *some* palette colour. A pixel within
  TOLERANCE[0] of one scores 1, beyond TOLERANCE[1] scores 0, linear between.
  Noise, colour casts and smeared edges lower it.
- sharpness: at every edge between two nearest-palette classes, the colour
  step present across it over the step the palette says is there (capped at
  1), weighted by that step. The step may take two pixels (the better of the
  two 2-pixel spans around the edge counts): a slightly soft edge keeps its
  marks, an edge blurred over three or more pixels loses them.
- texture: each region's interior against its ideal texture as read from the
  image (an object's flat colour, or its stripes/dots at their best phase; the
  background's pattern at its best phase), scored per pixel like purity;
  background and objects weigh half each. Washed-out stripes, mottled flat
  areas and broken patterns lower it.
- fréchet: a set-level term on what the images show, not how well it is
  drawn. Each image gives content shares read by ShapesEval (its objects'
  colours, shapes, fills, digits, count, area and size; its background
  pattern), standardised by real renders of the same scenes with fresh
  layouts; each feature gets a Gaussian on both sides, and the Fréchet
  distance of the two diagonal Gaussians (mean term bias-corrected for sample
  size), summed over features, becomes exp(-distance / FRECHET_SCALE). It
  catches what a single image does not: a wrong colour mix (every free colour
  drawn red costs about half of this term), lost variety, objects too large,
  too small or too few. Below FRECHET_MIN_IMAGES images a set has no
  distribution to speak of: the term is left out and quality is the mean of
  the three per-image parts.

The per-image quality is the mean of the per-image parts and the set's
fréchet term, so the set's quality is the mean of the per-image values.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hprune.toy.shapes_eval.detect import PALETTE, Reading, interior
from hprune.toy.world import BACKGROUND_RGB, COLORS, DARK_RGB, GLYPH_RGB, MAIN_RGB, MAX_OBJECTS, PATTERN_RGB, SHAPES

TOLERANCE = (10.0, 60.0)  # RGB distance: full marks up to the first, none past the second
FRECHET_SCALE = 1.0
FRECHET_MIN_IMAGES = 32
PARTS = ("purity", "sharpness", "texture")


def _closeness(distance: np.ndarray) -> np.ndarray:
    lo, hi = TOLERANCE
    return np.clip((hi - distance) / (hi - lo), 0.0, 1.0)


def purity(distance: np.ndarray) -> float:
    """Mean closeness of pixels to their nearest palette colour."""
    return float(_closeness(distance).mean())


def sharpness(image: np.ndarray, index: np.ndarray) -> float:
    """Colour step present across each edge between nearest-palette classes, over the step expected.

    An edge may take two pixels to complete (the better of the two 2-pixel
    spans around it counts), so a softened but crisp-looking edge keeps its
    marks while a blurred one, spread over three or more, loses them.
    """
    rgb = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    present, expected = [], []
    for axis in (0, 1):
        a = np.moveaxis(index, axis, 0)
        differ = a[1:] != a[:-1]  # edge between rows i and i+1 (of the unpadded image)
        if not differ.any():
            continue
        p = np.moveaxis(rgb, axis, 0)[:, 1:-1]  # p[j] is row j-1, edge-padded
        before, after = p[2:-1] - p[:-3], p[3:] - p[1:-2]  # spans (i-1, i+1) and (i, i+2)
        span = np.maximum(np.sqrt((before**2).sum(-1)), np.sqrt((after**2).sum(-1)))
        present.append(span[differ])
        expected.append(np.sqrt(((PALETTE[a[1:][differ]] - PALETTE[a[:-1][differ]]) ** 2).sum(-1)))
    if not present:
        return 1.0  # a flat image has no edge to smear
    present, expected = np.concatenate(present), np.concatenate(expected)
    return float(np.minimum(present, expected).sum() / max(expected.sum(), 1e-6))


def ideal_image(reading: Reading) -> np.ndarray:
    """What the image should look like, pixel for pixel, given what was read from it."""
    ideal = np.empty(reading.labels.shape + (3,), np.float32)
    ideal[:] = BACKGROUND_RGB
    ideal[reading.background_pattern] = PATTERN_RGB
    for obj in reading.objects:
        ideal[obj.mask] = MAIN_RGB[obj.color]
        ideal[obj.mask & obj.fill_pattern] = DARK_RGB[obj.color]
        if obj.digit is not None:
            ideal[obj.glyph] = GLYPH_RGB[obj.digit_color]
    return ideal


def texture_fidelity(image: np.ndarray, reading: Reading) -> float:
    error = image.astype(np.float32) - ideal_image(reading)
    closeness = _closeness(np.sqrt((error**2).sum(-1)))
    background = np.ones(closeness.shape, bool)
    inner = np.zeros(closeness.shape, bool)
    for obj in reading.objects:
        background &= ~ndimage.binary_dilation(obj.mask, iterations=2)
        inner |= interior(obj.mask, obj.glyph)
    parts = [closeness[region].mean() for region in (background, inner) if region.any()]
    return float(np.mean(parts)) if parts else 1.0


def measure(image: np.ndarray, reading: Reading) -> tuple[dict[str, float], np.ndarray]:
    """(per-image parts, feature vector for the fréchet term) of one image."""
    parts = {
        "purity": purity(reading.distance),
        "sharpness": sharpness(image, reading.nearest),
        "texture": texture_fidelity(image, reading),
    }
    return parts, features(reading)


# ---------------------------------------------------------------- set level

FEATURE_FLOOR = 0.02  # every feature is a share in [0, 1]; smaller spreads count as this


def features(reading: Reading) -> np.ndarray:
    """What an image shows, as shares in [0, 1]: colours, shapes, fills, digits, background,
    object count, mean object area, large objects.

    Content read from the image (objects and background), not pixel quality:
    the per-image parts measure that. Shares are over the image's objects.
    """
    objects = reading.objects
    n = max(len(objects), 1)

    def share(test) -> float:
        return sum(bool(test(o)) for o in objects) / n

    return np.array([
        *(share(lambda o, c=c: o.color == c) for c in COLORS),
        *(share(lambda o, s=s: o.shape == s) for s in SHAPES),
        share(lambda o: o.fill == "striped"), share(lambda o: o.fill == "dotted"),
        share(lambda o: o.digit is not None), share(lambda o: o.digit_color == "white"),
        *(float(reading.background == b) for b in ("striped", "checkered", "unknown")),
        min(len(objects) / MAX_OBJECTS, 1.0),
        np.mean([o.area for o in objects]) / reading.labels.size if objects else 0.0,
        share(lambda o: o.size == "large"),
    ], np.float64)  # fmt: skip


def frechet(feats: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet distance of diagonal Gaussians over standardised features.

    The mean term is bias-corrected (its expected value for two samples of
    one distribution is var/n + var/m), so equal distributions score ~0 at any
    sample size.
    """
    mu_r, sd_r = reference.mean(0), reference.std(0, ddof=1)
    scale = np.hypot(sd_r, FEATURE_FLOOR)
    x, r = (feats - mu_r) / scale, (reference - mu_r) / scale
    n, m = len(x), len(r)
    var_x = x.var(0, ddof=1) if n > 1 else np.zeros(x.shape[1])
    var_r = r.var(0, ddof=1)
    mean_term = (x.mean(0) - r.mean(0)) ** 2 - var_x / n - var_r / m
    sd_term = (np.sqrt(var_x) - np.sqrt(var_r)) ** 2
    return max(float((mean_term + sd_term).sum()), 0.0)


def frechet_score(distance: float) -> float:
    return float(np.exp(-distance / FRECHET_SCALE))
