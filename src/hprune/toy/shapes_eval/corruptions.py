"""Graded corruptions of real renders: how ShapesEval is validated.

Each takes uint8 images (N, 64, 64, 3) and a level (0 = untouched) and returns
new images; the scene-level ones (`drop_object`, `miscount`) change what is
drawn instead. The tests require both scores to fall, level by level, under
the image corruptions, and the semantic score under the scene ones.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hprune.toy.render import render
from hprune.toy.world import MAX_OBJECTS, Layout, Scene, realize


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return images.copy()
    out = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="nearest")
    return _to_uint8(out)


def noise(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _to_uint8(images.astype(np.float32) + rng.normal(0.0, std, images.shape))


def color_shift(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate every colour about the grey axis (a hue rotation; greys stay grey)."""
    axis = np.ones(3) / np.sqrt(3)
    t = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1 - np.cos(t)) * np.outer(axis, axis)
    return _to_uint8(images.astype(np.float32) @ rotation.T)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def drop_object(scene: Scene, seed: int) -> np.ndarray:
    """A render of the scene with its last object left out (needs 2 or more objects)."""
    layout = realize(scene, np.random.default_rng(seed))
    return render(Layout(layout.objects[:-1], layout.background))


def miscount(scene: Scene, seed: int) -> np.ndarray:
    """A render of a counting scene with one object too many (or too few, at the maximum)."""
    n = len(scene.objects)
    wrong = n + 1 if n < MAX_OBJECTS else n - 1
    return render(realize(Scene(scene.category, (scene.objects[0],) * wrong), np.random.default_rng(seed)))
