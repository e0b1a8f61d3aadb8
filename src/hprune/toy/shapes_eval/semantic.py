"""GenEval-style correctness: does an image show exactly what its scene says?

An image is correct (1) when it shows exactly as many objects as the scene
names, there is a one-to-one matching of scene objects to found objects in
which every attribute the prompt names holds (shape, colour, size, fill,
digit and its colour), the relation holds between the first two objects
(centre offset along the relation's axis, larger than across it), and the
background shows the named pattern. Attributes the prompt leaves free are not
checked. This is stricter than GenEval, which ignores extra objects: in this
world a stray blob is a visible defect.
"""

from __future__ import annotations

import itertools

from hprune.toy.shapes_eval.detect import Found, Reading
from hprune.toy.world import ObjectSpec, Scene, relation_holds

ATTRIBUTES = ("shape", "color", "size", "fill", "digit", "digit_color")


def judge(scene: Scene, reading: Reading) -> tuple[bool, str]:
    """(correct, reason): the reason names what is wrong, or is 'ok'."""
    found = reading.objects
    if len(found) != len(scene.objects):
        return False, f"found {len(found)} objects, the scene has {len(scene.objects)}"
    if scene.background is not None and reading.background != scene.background:
        return False, f"background is {reading.background}, not {scene.background}"
    best = None
    for perm in itertools.permutations(found):
        problems = [p for spec, obj in zip(scene.objects, perm) for p in _mismatches(spec, obj)]
        if scene.relation and not relation_holds(scene.relation, perm[0].center, perm[1].center):
            problems.append(f"the {perm[0].shape} is not {scene.relation} the {perm[1].shape}")
        if not problems:
            return True, "ok"
        if best is None or len(problems) < len(best):
            best = problems
    return False, "; ".join(best)


def _mismatches(spec: ObjectSpec, obj: Found) -> list[str]:
    out = []
    for attr in ATTRIBUTES:
        want = getattr(spec, attr)
        if want is not None and getattr(obj, attr) != want:
            out.append(f"{attr} {getattr(obj, attr)} where {want} was asked")
    return out
