"""Prompts for real pipelines: a text file (one a line), or the small sets shipped with hprune,
written for it: 64 for calibration and training data (prompts.txt) and 16 held out for
evaluation (eval_prompts.txt), so the report's numbers come from prompts no stage chose with."""

from __future__ import annotations

from pathlib import Path

from hprune.core.errors import HpruneError

DEFAULT_PROMPTS = Path(__file__).parent / "prompts.txt"
DEFAULT_EVAL_PROMPTS = Path(__file__).parent / "eval_prompts.txt"


def read_prompts(path: str | Path | None = None) -> list[str]:
    """The non-empty lines of `path` (None: the shipped set). Raises HpruneError for a
    missing or empty file."""
    path = Path(path) if path else DEFAULT_PROMPTS
    if not path.is_file():
        raise HpruneError(f"prompt file {path} does not exist; pass a text file with one prompt a line.")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise HpruneError(f"prompt file {path} holds no prompts; write one prompt a line.")
    return lines
