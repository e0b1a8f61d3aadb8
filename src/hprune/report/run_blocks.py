"""The plain blocks a run report is built of (text, table, image, code, section) and the
readers of a run folder's JSON: what hprune.report.run_sections builds and
hprune.report.run_page writes as HTML and Markdown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.folders.run_layout import RunLayout


@dataclass
class Image:
    name: str  # file name in report_files/, unique in the report
    png: bytes
    alt: str


@dataclass
class Text:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list]  # cells: str (or anything str() reads well) or Image


@dataclass
class Code:
    text: str


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)

    def images(self) -> list[Image]:
        cells = [c for b in self.blocks if isinstance(b, Table) for row in b.rows for c in row]
        return [b for b in [*self.blocks, *cells] if isinstance(b, Image)]


def read_run_info(layout: RunLayout) -> dict:
    """run.json, or one sentence naming the folder and the fix."""
    if not layout.info.is_file():
        raise HpruneError(f"{layout.root} is not an `hprune run` folder (it has no run.json); pass the --out "
                          f"folder of `hprune run`, or start one with `hprune run MODEL --out {layout.root}`.")
    return read_json(layout.info)


def read_json(path: Path) -> dict | None:
    """The file's JSON, None when it does not exist yet."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HpruneError(f"{path} is not valid JSON; delete it and rerun `hprune run` to redo its stage.") from None
