"""Save and load pruned models.

A pruned transformer is a diffusers model folder. Whole-block plans load back
with plain `from_pretrained` (the config says how many blocks remain). Plans
with subcomponents also write `hprune_plan.json` beside the weights and load
with `load_pruned`, which rebuilds the original architecture without
allocating weights, applies the plan and then loads the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import torch

from hprune.arch import adapter_for_class
from hprune.errors import HpruneError
from hprune.plan import Plan

PLAN_FILE = "hprune_plan.json"
META_FILE = "hprune_meta.json"
CONFIG = "config.json"


SHIPPED_TEACHERS = ("shapes-sd3", "shapes-flux")


def transformer_dir(path: str | Path) -> Path:
    """The transformer folder of a model folder, a pipeline folder or a shipped
    shapes teacher (`shapes-sd3`, `shapes-flux`)."""
    if str(path) in SHIPPED_TEACHERS:
        from hprune.toy.pipeline import resolve

        path = resolve(str(path))
    path = Path(path)
    if not path.exists():
        raise HpruneError(f"{path} does not exist; pass a diffusers transformer folder or pipeline folder.")
    for candidate in (path, path / "transformer"):
        if (candidate / CONFIG).is_file():
            return candidate
    raise HpruneError(
        f"{path} is not a diffusers model: it has no config.json (nor transformer/config.json); "
        "pass the folder saved by save_pretrained or a pipeline folder."
    )


def is_pipeline_dir(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HpruneError(f"{folder / CONFIG} is not valid JSON; re-save the model.") from None


def check_safetensors(file: Path) -> None:
    """Fail clearly on a truncated or corrupt .safetensors file, before torch does."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > size:
                raise ValueError
            header = json.loads(fh.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, struct.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise HpruneError(f"{file} is not a readable safetensors file; re-download or re-save the model.") from None
    if size < 8 + header_len + end:
        raise HpruneError(
            f"{file} is truncated ({size} of {8 + header_len + end} bytes); re-download or re-save the model."
        )


def _check_weights(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise HpruneError(f"{folder} has no .safetensors weights; save the model with safetensors.")
    for file in files:
        check_safetensors(file)
    return files


def model_class(folder: Path):
    import diffusers

    name = read_config(folder).get("_class_name", "")
    adapter_for_class(name)  # clear error for unsupported classes
    return getattr(diffusers, name)


def load_transformer(path: str | Path, torch_dtype: torch.dtype | None = None):
    """Load any supported transformer folder, pruned by hprune or not."""
    folder = transformer_dir(path)
    _check_weights(folder)
    plan_file = folder / PLAN_FILE
    if plan_file.is_file():
        plan = Plan.load(plan_file)
        if not plan.blocks_only:
            return _load_subcomponent_pruned(folder, plan, torch_dtype)
    return model_class(folder).from_pretrained(folder, torch_dtype=torch_dtype)


load_pruned = load_transformer


def _load_subcomponent_pruned(folder: Path, plan: Plan, torch_dtype):
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    from hprune.surgery import prune_

    cls = model_class(folder)
    config = {k: v for k, v in read_config(folder).items() if not k.startswith("_")}
    config.update({k: v for k, v in plan.arch.items() if k != "class"})
    with init_empty_weights():
        model = cls.from_config(config)
    adapter = adapter_for_class(plan.arch["class"])
    placeholders = {u.key: torch.zeros(adapter.norm_linear(model, u).out_features) for u in plan.units if u.is_norm}
    prune_(model, plan, norm_means=placeholders)
    state = {}
    for file in _check_weights(folder):
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise HpruneError(
            f"{folder}'s weights do not match its {PLAN_FILE} ({len(missing)} missing, {len(unexpected)} unexpected "
            "tensors); the folder was changed after hprune saved it — prune the original model again."
        )
    return model.to(torch_dtype) if torch_dtype is not None else model


def save_pruned(model, plan: Plan | None, out_dir: str | Path, source: str | Path | None = None,
                overwrite: bool = False) -> Path:
    """Save atomically: everything is written to a temporary sibling folder,
    which is renamed into place only when complete. With `source` a pipeline
    folder, the other components are copied so `out_dir` is a full pipeline."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise HpruneError(f"{out_dir} already exists and is not empty; choose another --out or remove it.")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        target = tmp
        if source is not None and is_pipeline_dir(source):
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("transformer"))
            target = tmp / "transformer"
        model.save_pretrained(target)
        if plan is not None:
            plan.save(target / PLAN_FILE)
        write_meta(target)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def write_meta(folder: Path, **extra) -> None:
    """What made this folder: command line and versions (STYLE.md rule 4)."""
    import diffusers

    meta = {"command": sys.argv, "versions": {"hprune": _version(), "torch": torch.__version__,
                                              "diffusers": diffusers.__version__}, **extra}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hprune")
    except PackageNotFoundError:
        return "unknown"


def load_pruned_pipeline(path: str | Path, torch_dtype: torch.dtype | None = None):
    """A diffusers pipeline folder whose transformer hprune pruned."""
    from diffusers import DiffusionPipeline

    if not is_pipeline_dir(path):
        raise HpruneError(f"{path} is not a diffusers pipeline folder (no model_index.json).")
    transformer = load_transformer(path, torch_dtype=torch_dtype)
    return DiffusionPipeline.from_pretrained(path, transformer=transformer, torch_dtype=torch_dtype)


def load_any_pipeline(name_or_path: str, device="cpu", dtype=None):
    """A shapes teacher (by name or folder) or a diffusers pipeline folder."""
    from hprune.toy.pipeline import PIPELINES, SHIPPED, load_pipeline

    index = Path(name_or_path) / "model_index.json"
    if name_or_path in SHIPPED or (index.is_file() and json.loads(index.read_text()).get("_class_name") in PIPELINES):
        return load_pipeline(name_or_path, device=device, dtype=dtype or torch.float32)
    if not index.is_file():
        raise HpruneError(f"{name_or_path} is neither {' nor '.join(SHIPPED)} nor a diffusers pipeline folder "
                          "(no model_index.json); pass a whole pipeline: its text encoders are needed.")
    return load_pruned_pipeline(name_or_path, torch_dtype=dtype).to(device)
