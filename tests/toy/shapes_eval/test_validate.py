"""ShapesEval's validation (issue 5, item 4).

Real renders score at least 0.98 (semantic) and 0.95 (quality); graded
corruptions lower the scores level by level. The corruption tests use 16
images per category of the held-out split (128 images); the render test the
full evaluation set of 64 per category.
"""

from dataclasses import replace

import numpy as np
import pytest

from hprune.toy.shapes_eval import corruptions, evaluate
from hprune.toy.prompts import parse
from hprune.toy.render import render_scene
from hprune.toy.splits import eval_set


def renders(split="test", per_category=64):
    items = eval_set(split, per_category)
    scenes = [parse(item.prompt) for item in items]
    return items, scenes, np.stack([render_scene(scene, item.seed) for scene, item in zip(scenes, items)])


@pytest.fixture(scope="module")
def small():
    return renders(per_category=16)


@pytest.mark.parametrize("split", ["test", "val"])
def test_real_renders_score_near_one(split):
    items, scenes, images = renders(split)
    report = evaluate(images, scenes)
    assert report.semantic >= 0.98 and report.quality >= 0.95
    assert all(c["semantic"] >= 0.98 for c in report.per_category.values()), report.per_category
    assert report.quality_parts["frechet"] >= 0.95  # fresh layouts of the same scenes


def scores(images, scenes):
    report = evaluate(images, scenes)
    return report.semantic, report.quality


def assert_falls(values, strictly, name):
    """Non-increasing level by level; strictly falling too where `strictly`; and lower at the end."""
    steps = np.diff(values)
    assert (steps < 0).all() if strictly else (steps <= 1e-12).all(), f"{name}: {np.round(values, 4)}"
    assert values[-1] < values[0] - 0.05, f"{name}: {np.round(values, 4)}"


IMAGE_CORRUPTIONS = {
    "blur": (corruptions.blur, [0, 0.5, 0.7, 1.0, 1.5]),
    "noise": (corruptions.noise, [0, 8, 16, 30, 50]),
    # Hue rotation: past about half the gap between palette hues (~25-35 degrees)
    # a colour lands near *another* palette colour, a clean picture of the
    # wrong colour. Semantic falls there; quality is graded below it.
    "color_shift": (corruptions.color_shift, [0, 8, 16, 24, 32]),
}


@pytest.mark.parametrize("name", IMAGE_CORRUPTIONS)
def test_image_corruptions_lower_both_scores_level_by_level(small, name):
    _, scenes, images = small
    corrupt, levels = IMAGE_CORRUPTIONS[name]
    semantic, quality = zip(*(scores(corrupt(images, level), scenes) for level in levels))
    assert_falls(semantic, strictly=False, name=f"{name} semantic")
    assert_falls(quality, strictly=True, name=f"{name} quality")


def corrupt_share(images, scenes, items, which, corrupt, share):
    out = images.copy()
    for i in which[: round(share * len(which))]:
        out[i] = corrupt(scenes[i], items[i].seed)
    return out


SHARES = [0, 0.25, 0.5, 0.75, 1.0]


def test_missing_objects_lower_both_scores(small):
    items, scenes, images = small
    multi = [i for i, s in enumerate(scenes) if len(s.objects) > 1]
    semantic, quality = zip(*(
        scores(corrupt_share(images, scenes, items, multi, corruptions.drop_object, share), scenes) for share in SHARES
    ))  # fmt: skip
    assert_falls(semantic, strictly=True, name="missing object semantic")
    assert all(np.diff(quality) <= 1e-12) and quality[-1] < quality[0] - 0.05, quality  # the fréchet term sees fewer objects


def test_wrong_counts_lower_the_semantic_score(small):
    # A clean picture of three circles is a well-made picture: quality is not
    # asked to fall, only to not rise.
    items, scenes, images = small
    counting = [i for i, s in enumerate(scenes) if s.category == "counting"]
    semantic, quality = zip(*(
        scores(corrupt_share(images, scenes, items, counting, corruptions.miscount, share), scenes) for share in SHARES
    ))  # fmt: skip
    assert_falls(semantic, strictly=True, name="wrong count semantic")
    assert all(np.diff(quality) <= 1e-12), quality


def test_soft_generator_like_images_still_read_right(small):
    # A generator's edges are never pixel-exact: slight blur and noise must not cost semantic points.
    _, scenes, images = small
    soft = corruptions.noise(corruptions.blur(images, 0.6), 4)
    report = evaluate(soft, scenes)
    assert report.semantic >= 0.98
    assert 0.85 < report.quality < 1.0


def test_frechet_term_sees_a_wrong_colour_mix_that_semantic_allows(small):
    # Free colours all drawn red: every image is still correct, the set is not like real renders.
    items, scenes, images = small
    red = [replace(s, objects=tuple(replace(o, color=o.color or "red") for o in s.objects)) for s in scenes]
    skewed = np.stack([render_scene(s, item.seed) for s, item in zip(red, items)])
    honest, biased = evaluate(images, scenes), evaluate(skewed, scenes)
    assert biased.semantic == honest.semantic == 1.0
    assert biased.quality_parts["frechet"] < honest.quality_parts["frechet"] - 0.1
