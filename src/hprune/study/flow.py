"""A participant's way through a study, as the paper's appendix A.5 describes it.

For each prompt set: pick the best of the methods' images (shown in a fresh random
order), then rate each image alone (again in random order) from 0 to 5 on Text
Alignment and Image Quality. The whole plan is drawn when the participant starts
and stored, so that a resume shows exactly the same order. Each submission names
the step it answers; a step already answered (a replay, a second tab, a finished
participant) is refused and nothing is stored.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import time
from dataclasses import dataclass

from hprune.study import db

RATING_SCALE = range(6)  # 0..5


class Refused(Exception):
    """A submission that stores nothing: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Step:
    """One page: kind "pick" (images: the grid) or "rate" (images: the one image)."""

    index: int
    total: int
    kind: str
    prompt_id: int
    images: list[str]


def draw_plan(by_prompt: dict[int, list[str]], per_participant: int, rng: random.Random) -> list[dict]:
    prompt_ids = rng.sample(sorted(by_prompt), min(per_participant, len(by_prompt)))
    plan = []
    for prompt_id in prompt_ids:
        plan.append({"kind": "pick", "prompt": prompt_id, "images": rng.sample(by_prompt[prompt_id], len(by_prompt[prompt_id]))})
        for image in rng.sample(by_prompt[prompt_id], len(by_prompt[prompt_id])):
            plan.append({"kind": "rate", "prompt": prompt_id, "images": [image]})
    return plan


def start(conn: sqlite3.Connection) -> str:
    """A new participant with a freshly drawn plan; returns their secret token."""
    per_participant = int(db.get_meta(conn, "per_participant"))
    plan = draw_plan(db.images_by_prompt(conn), per_participant, random.SystemRandom())
    token = secrets.token_urlsafe(24)
    with db.Transaction(conn):
        db.add_participant(conn, token, json.dumps(plan), time.time())
    return token


def current_step(conn, token: str) -> Step | None:
    """The step the participant is on; None once they have finished. Raises Refused(403) for an unknown token."""
    person = _participant(conn, token)
    plan = json.loads(person["plan"])
    if person["progress"] >= len(plan):
        return None
    entry = plan[person["progress"]]
    return Step(person["progress"], len(plan), entry["kind"], entry["prompt"], entry["images"])


def submit_pick(conn, token: str, step: int, image: str) -> None:
    with db.Transaction(conn):
        person, entry = _open_step(conn, token, step, "pick")
        if image not in entry["images"]:
            raise Refused(422, "the picked image is not one of this page's images; pick one of those shown.")
        db.add_pick(conn, person["id"], entry["prompt"], image, time.time())
        _advance(conn, person, step)


def submit_rating(conn, token: str, step: int, image: str, text_alignment: int, image_quality: int) -> None:
    for name, value in (("text_alignment", text_alignment), ("image_quality", image_quality)):
        if value not in RATING_SCALE:
            raise Refused(422, f"{name} must be an integer from 0 to 5, got {value}.")
    with db.Transaction(conn):
        person, entry = _open_step(conn, token, step, "rate")
        if image != entry["images"][0]:
            raise Refused(422, "the rated image is not this page's image; rate the image shown.")
        db.add_rating(conn, person["id"], image, text_alignment, image_quality, time.time())
        _advance(conn, person, step)


def _participant(conn, token: str) -> sqlite3.Row:
    person = db.participant(conn, token) if token else None
    if person is None:
        raise Refused(403, "unknown participant; start the study from its first page.")
    return person


def _open_step(conn, token: str, step: int, kind: str) -> tuple[sqlite3.Row, dict]:
    """Inside the write transaction: the participant and the plan entry `step` answers, if it is still open."""
    person = _participant(conn, token)
    plan = json.loads(person["plan"])
    if person["progress"] >= len(plan):
        raise Refused(409, "you have already finished this study; thank you, nothing more is needed.")
    if step != person["progress"]:
        raise Refused(409, f"step {step + 1} was already answered or is not open yet; continue from step "
                           f"{person['progress'] + 1}.")
    entry = plan[step]
    if entry["kind"] != kind:
        raise Refused(422, f"step {step + 1} asks to {entry['kind']}, not to {kind}.")
    return person, entry


def _advance(conn, person: sqlite3.Row, step: int) -> None:
    last = step + 1 == len(json.loads(person["plan"]))
    if not db.advance(conn, person["id"], step, last, time.time()):
        raise Refused(409, f"step {step + 1} was answered by another request; reload the page.")
