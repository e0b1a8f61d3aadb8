"""Plain-English prompts for scenes, and back.

`describe(scene)` writes the one canonical prompt of a scene; `parse(prompt)`
reads any prompt of the grammar below into its scene, so `parse(describe(s))
== s` for every scene the world makes. A word outside VOCABULARY is an error
that names it.

    object   := "a" [size] [fill] [colour] shape
    prompt   := object                                    single_object, colors, texture
              | NUMBER [colour] shape(s)                  counting ("two red circles")
              | object "and" object                       two_object, color_attr
              | object RELATION object                    position ("... left of ...")
              | object "on a" PATTERN "background"         texture
              | "the digit" D "in" GLYPHCOLOUR "on" object  glyph
"""

from __future__ import annotations

import re

from hprune.core.errors import HpruneError
from hprune.toy.world import (
    BACKGROUNDS,
    COLORS,
    DIGITS,
    FILLS,
    GLYPH_COLORS,
    SHAPES,
    SIZES,
    ObjectSpec,
    Scene,
)

NUMBERS = ("one", "two", "three", "four")
PLURALS = {shape: shape + "s" for shape in SHAPES}
_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}
TEXTURED_FILLS = tuple(f for f in FILLS if f != "solid")  # "solid" is the unsaid default
PATTERNS = tuple(b for b in BACKGROUNDS if b != "plain")  # so is "plain"

VOCABULARY: tuple[str, ...] = (
    "a", "the", "and", "on", "in", "of", "left", "right", "above", "below", "background", "digit",
    *NUMBERS, *SHAPES, *PLURALS.values(), *COLORS, *SIZES, *TEXTURED_FILLS,
    *(p for p in PATTERNS if p not in TEXTURED_FILLS), *map(str, DIGITS), *GLYPH_COLORS,
)  # fmt: skip

_WORD = re.compile(r"[a-z0-9]+")


# ---------------------------------------------------------------- scene -> prompt


def describe(scene: Scene) -> str:
    if scene.category == "glyph":
        obj = scene.objects[0]
        text = f"the digit {obj.digit} in {obj.digit_color} on {_object(ObjectSpec(obj.shape, obj.color, obj.size))}"
    elif scene.category == "counting":
        obj, n = scene.objects[0], len(scene.objects)
        noun = obj.shape if n == 1 else PLURALS[obj.shape]
        text = " ".join(w for w in (NUMBERS[n - 1], obj.color, noun) if w)
    else:
        link = scene.relation or "and"
        text = f" {link} ".join(_object(o) for o in scene.objects)
    if scene.background not in (None, "plain"):
        text += f" on a {scene.background} background"
    return text


def _object(obj: ObjectSpec) -> str:
    fill = obj.fill if obj.fill != "solid" else None
    return " ".join(w for w in ("a", obj.size, fill, obj.color, obj.shape) if w)


# ---------------------------------------------------------------- prompt -> scene


def words_of(prompt: str) -> list[str]:
    """Lower-cased words; an unknown word raises an error that names it."""
    words = _WORD.findall(prompt.lower())
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        raise HpruneError(f"unknown word {unknown[0]!r} in prompt {prompt!r}; the shapes world knows: {' '.join(VOCABULARY)}.")
    if not words:
        raise HpruneError("empty prompt; write e.g. 'a red circle'.")
    return words


def parse(prompt: str) -> Scene:
    """The scene a prompt describes (see the module docstring for the grammar)."""
    words = words_of(prompt)
    try:
        scene = _parse(words)
    except (IndexError, ValueError, HpruneError) as err:
        detail = f" ({err})" if isinstance(err, HpruneError) else ""
        raise HpruneError(f"cannot read prompt {prompt!r}{detail}; write e.g. 'two red circles' or 'a blue square left of a yellow triangle'.") from None
    return scene


def _parse(words: list[str]) -> Scene:
    background = None
    if words[-1] == "background":
        if words[-4:-2] != ["on", "a"] or words[-2] not in PATTERNS:
            raise ValueError("background")
        background, words = words[-2], words[:-4]
    if words[:2] == ["the", "digit"]:
        return _parse_glyph(words, background)
    if words[0] in NUMBERS:
        return _parse_count(words, background)
    relation, parts = _split_relation(words)
    objects = tuple(_parse_object(p) for p in parts)
    return Scene(_category(objects, relation, background), objects, relation, background)


def _parse_glyph(words: list[str], background: str | None) -> Scene:
    if len(words) < 7 or words[3] != "in" or words[5] != "on" or words[4] not in GLYPH_COLORS:
        raise ValueError("glyph")
    obj = _parse_object(words[6:])
    glyph = ObjectSpec(obj.shape, obj.color, obj.size, obj.fill, int(words[2]), words[4])
    return Scene("glyph", (glyph,), None, background)


def _parse_count(words: list[str], background: str | None) -> Scene:
    n = NUMBERS.index(words[0]) + 1
    *color, noun = words[1:]
    shape = noun if n == 1 else _SINGULAR.get(noun)
    if len(color) > 1 or (color and color[0] not in COLORS) or shape not in SHAPES:
        raise ValueError("count")
    if background:
        raise ValueError("a counting prompt takes no background")
    return Scene("counting", (ObjectSpec(shape, color[0] if color else None),) * n)


def _split_relation(words: list[str]) -> tuple[str | None, list[list[str]]]:
    for i, w in enumerate(words):
        if w == "and":
            return None, [words[:i], words[i + 1 :]]
        if w in ("left", "right") and words[i + 1] == "of":
            return f"{w} of", [words[:i], words[i + 2 :]]
        if w in ("above", "below"):
            return w, [words[:i], words[i + 1 :]]
    return None, [words]


def _parse_object(words: list[str]) -> ObjectSpec:
    if len(words) < 2 or words[0] != "a" or words[-1] not in SHAPES:
        raise ValueError("object")
    attrs = {}
    for w in words[1:-1]:
        key = "size" if w in SIZES else "fill" if w in TEXTURED_FILLS else "color" if w in COLORS else None
        if key is None or key in attrs:
            raise ValueError("object")
        attrs[key] = w
    order = [k for k in ("size", "fill", "color") if k in attrs]
    if list(attrs) != order:
        raise ValueError("object")  # size, fill, colour: in that order
    return ObjectSpec(words[-1], **attrs)


def _category(objects: tuple[ObjectSpec, ...], relation: str | None, background: str | None) -> str:
    if relation:
        return "position"
    if background or any(o.fill for o in objects):
        return "texture"
    if len(objects) == 2:
        return "color_attr" if any(o.color for o in objects) else "two_object"
    return "colors" if objects[0].color else "single_object"
