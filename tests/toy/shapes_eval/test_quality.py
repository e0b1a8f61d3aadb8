"""ShapesEval's quality parts that a set-level score would hide: sharpness and the fréchet term."""

import numpy as np
import pytest

from hprune.toy.shapes_eval import corruptions, evaluate
from hprune.toy.shapes_eval.detect import PALETTE
from hprune.toy.shapes_eval.quality import FRECHET_MIN_IMAGES, frechet, sharpness
from hprune.toy.prompts import parse
from hprune.toy.render import render_scene
from hprune.toy.splits import eval_set
from hprune.toy.world import BACKGROUND_RGB, CATEGORIES, MAIN_RGB


BLUE = 12  # index of MAIN_RGB["blue"] in the palette; 0 is the background


def edge(ramp: int, overshoot: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(image, nearest-palette classes): background on the left, blue on the right, the step
    between them spread over `ramp` + 1 pixels (`ramp` pixels in between, evenly spaced), each
    pixel read as the nearer of the two colours. `overshoot` darkens the last background pixel,
    as a sharpening filter's ring does."""
    t = np.clip((np.arange(16) - 7 + ramp) / (ramp + 1), 0.0, 1.0)
    bg, blue = np.array(BACKGROUND_RGB, np.float32), np.array(MAIN_RGB["blue"], np.float32)
    row = bg * (1 - t[:, None]) + blue * t[:, None]
    row[7 - ramp] += overshoot * (bg - blue)
    index = np.where(t < 0.5, 0, BLUE)
    return np.repeat(row[None], 6, axis=0), np.repeat(index[None], 6, axis=0)


def test_sharpness_keeps_an_edge_of_two_pixels_and_loses_a_blurred_one():
    assert np.array_equal(PALETTE[[0, BLUE]], [BACKGROUND_RGB, MAIN_RGB["blue"]])
    assert sharpness(*edge(0)) == 1.0
    assert sharpness(*edge(1)) == pytest.approx(1.0)  # one pixel in between: a 2-pixel span holds the whole step
    # spread over 3 and 4 pixels: the best 2-pixel span holds 2/3 and 1/2 of the step
    assert sharpness(*edge(2)) == pytest.approx(2 / 3)
    assert sharpness(*edge(3)) == pytest.approx(1 / 2)
    assert sharpness(*edge(0, overshoot=0.3)) == 1.0  # a step larger than the palette's counts as the palette's
    image, index = edge(0)
    assert sharpness(image[:, :8], index[:, :8]) == 1.0  # no edge, nothing to smear


def renders(split: str, per_category: int):
    items = eval_set(split, per_category)
    scenes = [parse(item.prompt) for item in items]
    return scenes, np.stack([render_scene(scene, item.seed) for scene, item in zip(scenes, items)])


def test_blur_lowers_the_sharpness_part_and_the_quality_with_it():
    scenes, images = renders("val", 1)
    exact, blurred = evaluate(images, scenes), evaluate(corruptions.blur(images, 1.0), scenes)
    assert exact.quality_parts["sharpness"] >= 0.999
    assert blurred.quality_parts["sharpness"] < 0.8
    parts = ("purity", "sharpness", "texture")  # under FRECHET_MIN_IMAGES: the per-image parts only
    assert blurred.quality == pytest.approx(np.mean([blurred.quality_parts[p] for p in parts]))


def test_frechet_mean_term_is_bias_corrected_for_sample_size():
    # Samples of one distribution: their means differ by chance, by var/n + var/m in expectation.
    # Each sample gets exactly the reference's spread, so only the mean term is left; bias-corrected,
    # it is about 0 at any sample size, far below the var/n + var/m an uncorrected one adds.
    rng = np.random.default_rng(0)
    n_features, m = 1000, 256
    reference = rng.normal(size=(m, n_features))
    for n in (4, 8, 32, 256):
        x = rng.normal(size=(n, n_features))
        x = (x - x.mean(0)) / x.std(0, ddof=1) * reference.std(0, ddof=1) + x.mean(0)
        uncorrected = n_features * (1 / n + 1 / m)
        assert frechet(x, reference) < 0.25 * uncorrected, n


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_small_set_of_real_renders_keeps_a_full_frechet_term(split):
    # The smallest set that gets the term: fresh layouts of the same scenes are the same distribution,
    # so the term stays near 1 (uncorrected, 32 images would lose ~0.1-0.15 of it).
    scenes, images = renders(split, FRECHET_MIN_IMAGES // len(CATEGORIES))
    assert len(images) == FRECHET_MIN_IMAGES
    assert evaluate(images, scenes).quality_parts["frechet"] >= 0.95
