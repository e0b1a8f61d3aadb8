import numpy as np
import pytest

from hprune.core.errors import HpruneError
from hprune.toy.prompts import parse
from hprune.toy.render import FONT, render, render_scene, shape_mask
from hprune.toy.splits import enumerate_scenes
from hprune.toy.world import (
    CANVAS,
    CATEGORIES,
    COLORS,
    DARK_RGB,
    GAP,
    GLYPH_RGB,
    MAIN_RGB,
    SHAPES,
    SIZE_PX,
    BACKGROUND_RGB,
    PATTERN_RGB,
    Layout,
    ObjectSpec,
    Placed,
    Scene,
    realize,
    relation_holds,
)

PALETTE = {BACKGROUND_RGB, PATTERN_RGB, *GLYPH_RGB.values(), *MAIN_RGB.values(), *DARK_RGB.values()}


def test_world_has_the_issue_minimums():
    assert {"circle", "square", "triangle"} <= set(SHAPES)
    assert len(COLORS) >= 6 and len(SIZE_PX) >= 2
    assert sorted(FONT) == list(range(10))


def test_render_is_exact_and_deterministic():
    scene = parse("a blue square left of a yellow triangle")
    a, b = render_scene(scene, 3), render_scene(scene, 3)
    assert a.shape == (CANVAS, CANVAS, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_scene(scene, 4))  # another seed, another layout
    assert {tuple(p) for p in a.reshape(-1, 3)} <= PALETTE


def test_every_category_renders_only_palette_colours():
    rng = np.random.default_rng(0)
    for category in CATEGORIES:
        scenes = enumerate_scenes(category)
        for i in rng.choice(len(scenes), 10):
            image = render(realize(scenes[i], rng))
            assert {tuple(p) for p in image.reshape(-1, 3)} <= PALETTE


def test_shape_masks_fill_their_box_as_geometry_says():
    side = 24
    areas = {s: shape_mask(s, side).mean() for s in SHAPES}
    assert areas["square"] == 1.0
    assert areas["circle"] == pytest.approx(np.pi / 4, abs=0.03)
    assert areas["triangle"] == pytest.approx(0.5, abs=0.03)
    assert areas["diamond"] == pytest.approx(0.5, abs=0.05)


def test_textures_and_digits_are_drawn():
    striped = Layout((Placed("square", "red", "large", "striped", 10, 10),))
    image = render(striped)[10:34, 10:34]
    assert (image == MAIN_RGB["red"]).all(-1).mean() == pytest.approx(0.5, abs=0.05)
    assert (image == DARK_RGB["red"]).all(-1).mean() == pytest.approx(0.5, abs=0.05)
    glyph = Layout((Placed("square", "purple", "large", "solid", 10, 10, digit=7, digit_color="white"),))
    assert (render(glyph) == GLYPH_RGB["white"]).all(-1).sum() == 4 * sum(row.count("#") for row in FONT[7])
    for pattern in ("striped", "checkered"):
        assert (render(Layout((), pattern)) == PATTERN_RGB).all(-1).mean() > 0.2


def test_layouts_keep_objects_apart_inside_the_canvas_and_relations_clear():
    rng = np.random.default_rng(1)
    for scene in enumerate_scenes("position")[::37] + enumerate_scenes("counting")[::3]:
        layout = realize(scene, rng)
        boxes = [(o.x, o.y, o.side) for o in layout.objects]
        for x, y, side in boxes:
            assert GAP <= x and x + side <= CANVAS - GAP and GAP <= y and y + side <= CANVAS - GAP
        for i, (ax, ay, asz) in enumerate(boxes):
            for bx, by, bsz in boxes[i + 1 :]:
                assert ax + asz + GAP <= bx or bx + bsz + GAP <= ax or ay + asz + GAP <= by or by + bsz + GAP <= ay
        if scene.relation:
            a, b = layout.objects
            assert relation_holds(scene.relation, a.center, b.center, dominance=1.5)


def test_free_attributes_are_drawn_and_named_ones_kept():
    rng = np.random.default_rng(2)
    colours = {realize(parse("a circle"), rng).objects[0].color for _ in range(60)}
    assert colours == set(COLORS)
    placed = realize(parse("a small striped red triangle"), rng).objects[0]
    assert (placed.shape, placed.color, placed.size, placed.fill) == ("triangle", "red", "small", "striped")
    assert realize(parse("a red circle"), rng).objects[0].fill == "solid"  # unsaid fill is solid
    assert realize(parse("the digit 3 in black on a cyan circle"), rng).objects[0].size == "large"


def test_relations_read_image_coordinates():
    assert relation_holds("left of", (10, 30), (50, 30)) and not relation_holds("right of", (10, 30), (50, 30))
    assert relation_holds("above", (30, 10), (30, 50)) and relation_holds("below", (30, 50), (30, 10))
    assert not relation_holds("left of", (10, 10), (20, 50))  # mostly below: not "left of"


def test_scene_validation_names_the_field():
    with pytest.raises(HpruneError, match="shape"):
        ObjectSpec("hexagon")
    with pytest.raises(HpruneError, match="color"):
        ObjectSpec("circle", "pink")
    with pytest.raises(HpruneError, match="digit"):
        ObjectSpec("triangle", "red", digit=3, digit_color="white")
    with pytest.raises(HpruneError, match="relation"):
        Scene("position", (ObjectSpec("circle"),), relation="left of")
    with pytest.raises(HpruneError, match="1 to 4"):
        Scene("counting", (ObjectSpec("circle"),) * 5)


def test_scene_dict_round_trip():
    scene = parse("the digit 7 in white on a purple square on a striped background")
    assert Scene.from_dict(scene.to_dict()) == scene
