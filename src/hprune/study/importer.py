"""`hprune study create`: `hprune generate` folders of several methods -> one study file.

Every folder must hold the same prompts with the same seeds, so that each prompt
set compares methods on equal terms. Images go into the file under random ids:
neither a URL nor a file name can tell a participant which method made an image.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl
from hprune.study import db

LOG = "generations.jsonl"  # as hprune.generate.images writes them
SETTINGS = "generation.json"


@dataclass(frozen=True)
class MethodImages:
    """One method's generation folder: its name, model and (prompt, seed, png path) per index."""

    name: str
    folder: Path
    model: str
    items: list[tuple[str, int, Path]]


def read_folder(folder: str | Path, name: str) -> MethodImages:
    folder = Path(folder)
    if not (folder / LOG).is_file():
        raise HpruneError(f"{folder} has no {LOG}; pass folders written by `hprune generate`.")
    records = sorted(read_jsonl(folder / LOG), key=lambda r: r["index"])
    missing = [r["path"] for r in records if not (folder / r["path"]).is_file()]
    if not records or missing:
        what = f"image {missing[0]} is missing" if missing else "it lists no images"
        raise HpruneError(f"{folder}: {what}; re-run `hprune generate` with the same --out to finish it.")
    try:
        settings = json.loads((folder / SETTINGS).read_text()) if (folder / SETTINGS).is_file() else {}
    except json.JSONDecodeError:
        raise HpruneError(f"{folder / SETTINGS} is not valid JSON; re-run `hprune generate` into a new folder.")
    items = [(r["prompt"], int(r["seed"]), folder / r["path"]) for r in records]
    return MethodImages(name, folder, str(settings.get("model", "")), items)


def method_names(folders: list[str | Path], names: list[str] | None) -> list[str]:
    """Names from --names, else the folders' own names; they must be distinct."""
    if names is not None and len(names) != len(folders):
        raise HpruneError(f"--names gives {len(names)} names for {len(folders)} folders; give one name per folder.")
    chosen = list(names) if names is not None else [Path(f).resolve().name for f in folders]
    if len(set(chosen)) != len(chosen) or not all(n.strip() for n in chosen):
        raise HpruneError(f"method names {chosen} are empty or repeat; pass distinct ones with --names.")
    return chosen


def check_same_prompts(methods: list[MethodImages]) -> None:
    first = methods[0]
    for other in methods[1:]:
        a = [(p, s) for p, s, _ in first.items]
        b = [(p, s) for p, s, _ in other.items]
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise HpruneError(
                f"{other.folder} and {first.folder} differ in prompts or seeds ({len(b)} vs {len(a)} images, "
                f"first difference at index {at}); generate every method from the same prompts and seeds.")


def create_study(folders: list[str | Path], out: str | Path, names: list[str] | None = None,
                 reference: str | None = None, per_participant: int | None = None) -> dict:
    """Write the study file `out`; returns a summary (methods, prompts, images)."""
    if len(folders) < 2:
        raise HpruneError(f"a study compares methods: pass at least two --from folders, got {len(folders)}.")
    out = Path(out)
    if out.exists():
        raise HpruneError(f"{out} already exists; choose a new --out or remove it.")
    methods = [read_folder(f, n) for f, n in zip(folders, method_names(folders, names))]
    check_same_prompts(methods)
    reference = reference or methods[0].name
    if reference not in [m.name for m in methods]:
        raise HpruneError(f"--reference {reference!r} is not one of the methods {[m.name for m in methods]}.")
    if per_participant is not None and per_participant < 1:
        raise HpruneError(f"--per-participant must be at least 1, got {per_participant}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = db.connect(tmp)
    try:
        _fill(conn, methods, reference, per_participant)
    finally:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    tmp.replace(out)
    return {"methods": [m.name for m in methods], "prompts": len(methods[0].items),
            "images": len(methods) * len(methods[0].items), "reference": reference}


def _fill(conn, methods: list[MethodImages], reference: str, per_participant: int | None) -> None:
    db.create_schema(conn)
    with db.Transaction(conn):
        db.set_meta(conn, "reference", reference)
        db.set_meta(conn, "per_participant", str(per_participant or len(methods[0].items)))
        method_ids = [db.add_method(conn, m.name, str(m.folder), m.model) for m in methods]
        for position, (prompt, seed, _) in enumerate(methods[0].items):
            prompt_id = db.add_prompt(conn, position, prompt, seed)
            for method, method_id in zip(methods, method_ids):
                png = method.items[position][2].read_bytes()
                db.add_image(conn, secrets.token_urlsafe(12), prompt_id, method_id, png)
