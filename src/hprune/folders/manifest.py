"""`hprune.json`: the one record a model folder carries of what was done to it.

    {"format": "hprune-model", "schema": 1,
     "class": "SD3Transformer2DModel",
     "base_config": {... the original model's diffusers config ...},
     "history": [{"stage": "prune", "plan": {...}, "command": [...], "versions": {...}, "time": "..."},
                 {"stage": "distill", "summary": {...}, ...},
                 {"stage": "quantize", "config": {...}, "quantized": [...], "kept": [...], ...}]}

Plans in the history name units by their index in the original model. A
folder without a manifest is an unmodified diffusers model (its config.json
is its base config, its history empty).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.folders.paths import CONFIG

MANIFEST = "hprune.json"
FORMAT = "hprune-model"
SCHEMA = 1
# Side files of hprune before the manifest; a folder holding one was saved by an older version.
LEGACY_FILES = ("hprune_plan.json", "hprune_quant.json")


@dataclass
class Manifest:
    base_config: dict
    history: list[dict] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        return self.base_config.get("_class_name", "")

    def steps(self, stage: str) -> list[dict]:
        return [s for s in self.history if s["stage"] == stage]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "schema": SCHEMA, "class": self.class_name,
                "base_config": self.base_config, "history": self.history}

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        """The folder's manifest, or an empty history over its config.json."""
        path = folder / MANIFEST
        if not path.is_file():
            legacy = [name for name in LEGACY_FILES if (folder / name).is_file()]
            if legacy:
                raise HpruneError(f"{folder} was saved by an older hprune ({legacy[0]}, no {MANIFEST}); "
                                  "prune (and quantize) the original model again.")
            return cls(_read_json(folder / CONFIG))
        data = _read_json(path)
        if data.get("format") != FORMAT or data.get("schema") != SCHEMA or "base_config" not in data:
            raise HpruneError(f"{path} is not an hprune manifest of schema {SCHEMA}; save the model again with hprune.")
        return cls(data["base_config"], list(data.get("history", [])))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HpruneError(f"{path} is not valid JSON; re-save the model.") from None
