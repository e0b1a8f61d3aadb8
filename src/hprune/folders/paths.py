"""Where the model is: a shipped teacher's name, a run folder (RUN/model), a
diffusers pipeline folder (its transformer/) or a transformer folder."""

from __future__ import annotations

from pathlib import Path

from hprune.core.errors import HpruneError

CONFIG = "config.json"
MODEL_INDEX = "model_index.json"
RUN_MODEL = "model"  # a run folder keeps its model here, its run state beside it


def _shipped(path: str | Path) -> Path:
    from hprune.toy.pipeline import SHIPPED, resolve

    return resolve(str(path)) if str(path) in SHIPPED else Path(path)


def model_folder(path: str | Path) -> Path:
    """The transformer folder (the one holding config.json) that `path` names.
    Raises HpruneError when there is none."""
    path = _shipped(path)
    if not path.exists():
        raise HpruneError(f"{path} does not exist; pass a diffusers transformer folder, pipeline folder or run folder.")
    for candidate in (path, path / "transformer", path / RUN_MODEL, path / RUN_MODEL / "transformer"):
        if (candidate / CONFIG).is_file():
            return candidate
    raise HpruneError(
        f"{path} is not a diffusers model: it has no config.json (nor transformer/config.json); "
        "pass the folder saved by save_pretrained, a pipeline folder or an hprune run folder."
    )


def pipeline_folder(path: str | Path) -> Path | None:
    """The pipeline folder (with model_index.json) that `path` names, else None."""
    path = _shipped(path)
    for candidate in (path, path / RUN_MODEL):
        if (candidate / MODEL_INDEX).is_file():
            return candidate
    return None
