"""ShapesEval reads exactly what is drawn, and says no to each kind of wrong picture."""

import numpy as np
import pytest

from hprune.core.errors import HpruneError
from hprune.toy.shapes_eval import evaluate, read_image
from hprune.toy.shapes_eval.semantic import judge
from hprune.toy.prompts import parse
from hprune.toy.render import render, render_scene
from hprune.toy.world import COLORS, SHAPES, Layout, Placed


def placed(shape="circle", color="red", size="large", fill="solid", x=5, y=5, **kw):
    return Placed(shape, color, size, fill, x, y, **kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_reads_every_shape_and_size(shape, size):
    found = read_image(render(Layout((placed(shape, size=size, x=20, y=20),)))).objects
    assert [(o.shape, o.size, o.color, o.fill) for o in found] == [(shape, size, "red", "solid")]


@pytest.mark.parametrize("color", COLORS)
@pytest.mark.parametrize("fill", ["solid", "striped", "dotted"])
def test_reads_every_colour_and_fill(color, fill):
    for size in ("small", "large"):
        [obj] = read_image(render(Layout((placed("diamond", color, size, fill, x=17, y=21),)))).objects
        assert (obj.color, obj.fill) == (color, fill)


@pytest.mark.parametrize("digit", range(10))
def test_reads_every_digit_in_both_glyph_colours(digit):
    for color, glyph in (("purple", "white"), ("yellow", "black"), ("blue", "black")):
        layout = Layout((placed("square", color, digit=digit, digit_color=glyph, x=30, y=9),))
        [obj] = read_image(render(layout)).objects
        assert (obj.digit, obj.digit_color, obj.shape) == (digit, glyph, "square")


@pytest.mark.parametrize("pattern", ["plain", "striped", "checkered"])
def test_reads_the_background_pattern(pattern):
    layout = Layout((placed("circle", x=10, y=10), placed("square", "blue", x=36, y=34)), pattern)
    reading = read_image(render(layout))
    assert reading.background == pattern and len(reading.objects) == 2


WRONG = {
    # prompt: a layout that is *not* what the prompt says, and the reason's key word
    "two red circles": (Layout((placed(),)), "found 1 objects"),
    "a red circle": (Layout((placed(color="blue"),)), "color blue"),
    "a square": (Layout((placed("triangle"),)), "shape triangle"),
    "a small circle": (Layout((placed(size="large"),)), "size large"),
    "a striped red circle": (Layout((placed(fill="dotted"),)), "fill dotted"),
    "a red circle on a striped background": (Layout((placed(),), "checkered"), "background is checkered"),
    "a red circle left of a blue square": (
        Layout((placed(x=38, y=20), placed("square", "blue", x=5, y=20))),
        "not left of",
    ),
    "a red circle and a blue square": (
        Layout((placed(color="blue"), placed("square", "red", x=36, y=36))),
        "was asked",  # colours swapped: no matching binds both
    ),
    "the digit 7 in white on a purple square": (
        Layout((placed("square", "purple", digit=1, digit_color="white"),)),
        "digit 1",
    ),
    "the digit 3 in black on a yellow circle": (
        Layout((placed("circle", "yellow", digit=3, digit_color="white"),)),
        "digit_color white",
    ),
}


@pytest.mark.parametrize("prompt", WRONG)
def test_each_kind_of_wrong_picture_fails_with_its_reason(prompt):
    layout, reason = WRONG[prompt]
    correct, why = judge(parse(prompt), read_image(render(layout)))
    assert not correct and reason in why


def test_free_attributes_are_not_checked():
    layout = Layout((placed("circle", "green", "small", "striped"),), "checkered")
    assert judge(parse("a circle"), read_image(render(layout))) == (True, "ok")


def test_an_extra_object_fails_even_if_the_named_ones_are_there():
    layout = Layout((placed(), placed("square", "blue", x=36, y=36)))
    correct, why = judge(parse("a red circle"), read_image(render(layout)))
    assert not correct and "found 2 objects" in why


def test_evaluate_report_shape_and_json():
    prompts = ["two red circles", "a striped green circle", "a circle and a square"]
    images = np.stack([render_scene(parse(p), 0) for p in prompts])
    report = evaluate(images, prompts)  # prompts, Scenes or their dicts all work
    assert report.semantic == 1.0 and report.quality == 1.0
    assert set(report.per_category) == {"counting", "texture", "two_object"}
    assert report.quality_parts["frechet"] is None  # 3 images are no distribution
    assert [p["correct"] for p in report.per_prompt] == [True] * 3
    assert set(report.to_json()) == {"semantic", "quality", "per_category", "quality_parts"}
    same = evaluate(list(images), [parse(p).to_dict() for p in prompts])
    assert same.semantic == report.semantic and same.quality == report.quality


def test_semantic_is_the_mean_of_category_means():
    prompts = ["a red circle"] * 3 + ["two red circles"]
    images = np.stack([render_scene(parse(p), i) for i, p in enumerate(prompts)])
    images[0] = render_scene(parse("a blue circle"), 0)  # 2 of 3 colors right, counting right
    assert evaluate(images, prompts).semantic == pytest.approx((2 / 3 + 1) / 2)


def test_bad_input_is_a_clear_error():
    with pytest.raises(HpruneError, match="64x64"):
        evaluate(np.zeros((1, 32, 32, 3), np.uint8), ["a circle"])
    with pytest.raises(HpruneError, match="uint8"):
        evaluate(np.zeros((1, 64, 64, 3), np.float32), ["a circle"])
    with pytest.raises(HpruneError, match="one scene per image"):
        evaluate(np.zeros((2, 64, 64, 3), np.uint8), ["a circle"])
    with pytest.raises(HpruneError, match="unknown word"):
        evaluate(np.zeros((1, 64, 64, 3), np.uint8), ["a pink circle"])
