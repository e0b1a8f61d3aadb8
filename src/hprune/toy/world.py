"""The shapes world: its vocabulary of things, scenes, and their layouts.

A `Scene` is what a prompt says: a list of objects with the attributes the
prompt names (an attribute left `None` is free), an optional relation between
the first two objects, and an optional background pattern. A `Layout` is one
concrete picture of a scene: every attribute fixed, every object placed. The
renderer draws layouts exactly; ShapesEval checks an image against a scene,
never against a layout, so any picture that shows what the prompt says is right.

Free attributes are drawn when a scene is laid out: a free colour or size is
random; a free fill is `solid` and a free background `plain` (the world's
convention, so "a red circle" is a solid red circle on a plain background).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hprune.core.errors import HpruneError

CANVAS = 64  # images are CANVAS x CANVAS RGB

# Prompt categories: GenEval's six, then fill/background texture and drawn digits.
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "texture", "glyph")

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = ("red", "yellow", "green", "cyan", "blue", "purple")
SIZES = ("small", "large")
FILLS = ("solid", "striped", "dotted")
BACKGROUNDS = ("plain", "striped", "checkered")
DIGITS = tuple(range(10))
GLYPH_COLORS = ("white", "black")
GLYPH_SHAPES = ("square", "circle")  # a digit is drawn on a large square or circle
RELATIONS = ("left of", "right of", "above", "below")
MAX_OBJECTS = 4

# Side of an object's square bounding box, in pixels.
SIZE_PX = {"small": 14, "large": 24}

# Hues 50 to 70 degrees apart, so colours stay apart in any reasonable colour space.
# A textured fill alternates an object's colour with its dark shade (half the
# value): the silhouette keeps one colour family and the texture stays visible.
MAIN_RGB = {
    "red": (220, 45, 45),  # hue 0
    "yellow": (235, 205, 40),  # 51
    "green": (40, 175, 40),  # 120
    "cyan": (40, 190, 190),  # 180
    "blue": (50, 75, 220),  # 231
    "purple": (175, 55, 205),  # 288
}
DARK_RGB = {name: tuple(round(0.5 * c) for c in rgb) for name, rgb in MAIN_RGB.items()}
BACKGROUND_RGB = (224, 224, 224)
PATTERN_RGB = (192, 192, 192)  # background pattern
GLYPH_RGB = {"white": (255, 255, 255), "black": (24, 24, 24)}


@dataclass(frozen=True)
class ObjectSpec:
    """One object as a prompt names it; `None` means the prompt leaves it free."""

    shape: str
    color: str | None = None
    size: str | None = None
    fill: str | None = None
    digit: int | None = None
    digit_color: str | None = None

    def __post_init__(self):
        _check("shape", self.shape, SHAPES)
        _check("color", self.color, COLORS, optional=True)
        _check("size", self.size, SIZES, optional=True)
        _check("fill", self.fill, FILLS, optional=True)
        _check("digit", self.digit, DIGITS, optional=True)
        _check("digit_color", self.digit_color, GLYPH_COLORS, optional=True)
        if self.digit is not None and (self.shape not in GLYPH_SHAPES or self.fill not in (None, "solid")):
            raise HpruneError(f"a digit is drawn only on a solid {' or '.join(GLYPH_SHAPES)}, not on {self}.")
        if (self.digit is None) != (self.digit_color is None):
            raise HpruneError(f"digit and digit_color go together; got {self}.")


@dataclass(frozen=True)
class Scene:
    """What a prompt says. `relation` reads `objects[0] RELATION objects[1]`."""

    category: str
    objects: tuple[ObjectSpec, ...]
    relation: str | None = None
    background: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "objects", tuple(self.objects))
        _check("category", self.category, CATEGORIES)
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise HpruneError(f"a scene has 1 to {MAX_OBJECTS} objects, got {len(self.objects)}.")
        _check("relation", self.relation, RELATIONS, optional=True)
        _check("background", self.background, BACKGROUNDS, optional=True)
        if self.relation is not None and len(self.objects) != 2:
            raise HpruneError(f"a relation needs exactly two objects, got {len(self.objects)}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        objects = tuple(ObjectSpec(**o) for o in data["objects"])
        return cls(data["category"], objects, data.get("relation"), data.get("background"))


@dataclass(frozen=True)
class Placed:
    """An object with every attribute fixed, its bounding box at (x, y)."""

    shape: str
    color: str
    size: str
    fill: str
    x: int
    y: int
    digit: int | None = None
    digit_color: str | None = None

    @property
    def side(self) -> int:
        return SIZE_PX[self.size]

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.side / 2, self.y + self.side / 2


@dataclass(frozen=True)
class Layout:
    objects: tuple[Placed, ...]
    background: str = "plain"


def _check(name, value, allowed, optional=False):
    if value is None and optional:
        return
    if value not in allowed:
        raise HpruneError(f"{name} must be one of {allowed}, got {value!r}.")


# ---------------------------------------------------------------- layout

GAP = 3  # pixels between bounding boxes, and from the border
DOMINANCE = 1.5  # a relation's axis offset is at least this times the other axis


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], dominance: float = 1.0) -> bool:
    """Does centre `a` stand RELATION centre `b`? The relation's axis must dominate."""
    dx, dy = b[0] - a[0], b[1] - a[1]  # image y grows downwards
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along > 0 and along > dominance * abs(across)


def realize(scene: Scene, rng: np.random.Generator) -> Layout:
    """One picture of `scene`: free attributes drawn, objects placed without overlap."""
    for _ in range(1000):
        attrs = [_fix_attributes(o, rng) for o in scene.objects]
        boxes = _place([SIZE_PX[a["size"]] for a in attrs], rng)
        if boxes is None:
            continue
        placed = tuple(Placed(x=x, y=y, **a) for a, (x, y) in zip(attrs, boxes))
        if scene.relation is None or relation_holds(scene.relation, placed[0].center, placed[1].center, DOMINANCE):
            return Layout(placed, scene.background or "plain")
    raise AssertionError(f"could not lay out {scene}")  # the grammar only makes scenes that fit


def _fix_attributes(spec: ObjectSpec, rng: np.random.Generator) -> dict:
    size = spec.size or ("large" if spec.digit is not None else SIZES[rng.integers(len(SIZES))])
    return {
        "shape": spec.shape,
        "color": spec.color or COLORS[rng.integers(len(COLORS))],
        "size": size,
        "fill": spec.fill or "solid",
        "digit": spec.digit,
        "digit_color": spec.digit_color,
    }


def _place(sides: list[int], rng: np.random.Generator, tries: int = 200) -> list[tuple[int, int]] | None:
    """Top-left corners for boxes of these sides, GAP apart and inside the canvas."""
    boxes: list[tuple[int, int, int]] = []
    for side in sides:
        for _ in range(tries):
            x, y = (int(v) for v in rng.integers(GAP, CANVAS - GAP - side + 1, size=2))
            if all(_apart((x, y, side), b) for b in boxes):
                boxes.append((x, y, side))
                break
        else:
            return None
    return [(x, y) for x, y, _ in boxes]


def _apart(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    (ax, ay, asz), (bx, by, bsz) = a, b
    return ax + asz + GAP <= bx or bx + bsz + GAP <= ax or ay + asz + GAP <= by or by + bsz + GAP <= ay
