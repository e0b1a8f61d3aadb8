"""What was done to a model, kept on the model itself (as ModelOpt keeps its
`modelopt_state`) so that any stage can save it and `hprune.load` can replay it.

Each stage that changes a model in place (`prune_`, `distill`, `quantize_`)
calls `record`; the history is an ordered list of steps, each a plain dict
with the stage's name, its settings, the command line and the versions. The
first `record` also keeps the model's config as it was before any step: the
*base* config that the loader builds an empty model from.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import PackageNotFoundError, version

STAGES = ("prune", "distill", "quantize", "crop_pos_embed")
_HISTORY = "_hprune_history"
_BASE = "_hprune_base_config"


def versions() -> dict[str, str]:
    """Installed versions of the packages a saved model or pipeline depends on (transformers:
    the text encoders of a pipeline)."""
    out = {}
    for name in ("hprune", "torch", "diffusers", "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def config_dict(model) -> dict:
    """The diffusers config of `model` as a plain JSON-able dict (tuples as lists), with
    `_class_name` as diffusers writes it into config.json."""
    # a plain torch module (quantize_ takes any) has no diffusers config: its record is its class alone;
    # a transformers model (a T5 text encoder quantized by `hprune bench`) has one that is not a mapping
    raw = getattr(model, "config", None) or {}
    raw = raw.to_dict() if hasattr(raw, "to_dict") and not isinstance(raw, dict) else dict(raw)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
    return {"_class_name": type(model).__name__, **config}


def base_config(model) -> dict:
    """The config of the original model, before any recorded step."""
    return getattr(model, _BASE, None) or config_dict(model)


def history(model) -> list[dict]:
    """The recorded steps, oldest first (empty for an untouched model)."""
    return list(getattr(model, _HISTORY, []))


def record(model, stage: str, **data) -> None:
    """Append one step to the model's history (call it before changing the config)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    if getattr(model, _BASE, None) is None:
        setattr(model, _BASE, config_dict(model))
    step = {"stage": stage, **data, "command": list(sys.argv), "versions": versions(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    setattr(model, _HISTORY, history(model) + [step])


def restore(model, base: dict, steps: list[dict]) -> None:
    """Attach a saved history to a model rebuilt from it (hprune.load)."""
    setattr(model, _BASE, dict(base))
    setattr(model, _HISTORY, [dict(s) for s in steps])


def steps_of(model, stage: str) -> list[dict]:
    return [s for s in history(model) if s["stage"] == stage]
