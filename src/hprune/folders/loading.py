"""`hprune.load`: rebuild any model folder an hprune stage wrote.

Empty model from the original config -> replay the pruning in the manifest ->
restore the quantized layers -> load the weights -> check that every tensor
is real (nothing left on the meta device). A folder without a manifest is a
plain diffusers model and loads the same way with an empty history.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from hprune.model import adapter_for_class
from hprune.core.errors import HpruneError
from hprune.folders.manifest import MANIFEST, Manifest
from hprune.folders.paths import MODEL_INDEX, model_folder, pipeline_folder
from hprune.folders.weights import read_state
from hprune.model.attention import use_fastest_attention
from hprune.model.pos_embed import STAGE as CROP_STAGE, apply_crop
from hprune.planning.plan import Plan, compose
from hprune.core.provenance import restore, steps_of
from hprune.quant import get_backend
from hprune.quant.quantize import QuantConfig, quant_state
from hprune.prune.surgery import check_plan_signature, prune_


def load(path: str | Path, torch_dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The transformer saved in `path` (a transformer, pipeline or run folder, or a
    shipped teacher's name), pruned, distilled or quantized by hprune or not.

    Weights keep their stored dtype unless `torch_dtype` is given (ignored for
    quantized models, which compute in their config's dtype). The model carries
    its history, so saving it again or pruning it further composes.
    On a CUDA device it also picks the attention kernel for the model
    (hprune.model.attention.use_fastest_attention: cuDNN pinned on Hopper at head size 64/128).
    Raises HpruneError naming the folder when it is incomplete or inconsistent."""
    folder = model_folder(path)
    manifest = Manifest.read(folder)
    model = _empty_model(folder, manifest.base_config)
    _replay_prune(model, manifest)
    for step in manifest.steps(CROP_STAGE):
        apply_crop(model, step["grid"])
    state = read_state(folder)
    quant = manifest.steps("quantize")
    with torch.no_grad():
        if quant:
            _restore_quantized(model, quant[-1], state, torch.device(device), folder)
        else:
            _assign(model, state, folder)
    _check_materialised(model, folder)
    restore(model, manifest.base_config, manifest.history)
    if torch_dtype is not None and not quant:
        nn.Module.to(model, torch_dtype)  # diffusers' own `to` warns about fp32 modules these models do not have
    if torch.device(device).type == "cuda":
        use_fastest_attention(model)
    return model.to(device).eval()


def check_plan_for(plan: Plan, path: str | Path) -> None:
    """Raise HpruneError unless `plan` fits the original model of folder `path`
    (read from its config and manifest, without loading weights)."""
    manifest = Manifest.read(model_folder(path))
    adapter = adapter_for_class(manifest.class_name)
    check_plan_signature(plan, adapter.family, adapter.config_signature(manifest.base_config))


def _empty_model(folder: Path, config: dict) -> nn.Module:
    import diffusers
    from accelerate import init_empty_weights

    name = config.get("_class_name", "")
    adapter_for_class(name)  # one sentence for classes hprune does not support
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    with init_empty_weights(include_buffers=False):
        return getattr(diffusers, name).from_config(config)


def _replay_prune(model: nn.Module, manifest: Manifest) -> None:
    plans = [Plan.from_dict(step["plan"], source=f"a prune step of {MANIFEST}") for step in manifest.steps("prune")]
    if not plans:
        return
    # Structure only: removed norms get a placeholder constant that the saved weights replace.
    prune_(model, Plan(family=plans[0].family, arch=plans[0].arch, units=compose(plans), norm_mode="identity"))


def _restore_quantized(model: nn.Module, step: dict, state: dict, device: torch.device, folder: Path) -> None:
    config = QuantConfig(**step["config"])
    backend = get_backend(config.backend)
    backend.check(folder=folder)
    backend.restore(model, step["quantized"], state, config, device)
    for name, buf in model.named_buffers():  # buffers the file does not hold follow the compute dtype
        if name not in state and buf.is_floating_point():
            parent, _, leaf = name.rpartition(".")
            (model.get_submodule(parent) if parent else model)._buffers[leaf] = buf.to(config.torch_compute_dtype)


def _assign(model: nn.Module, state: dict, folder: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise HpruneError(
            f"{folder}'s weights do not fit the model its config and {MANIFEST} describe ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. {example}); the folder was changed after it was saved — "
            "save the model again."
        )


def _check_materialised(model: nn.Module, folder: Path) -> None:
    meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise HpruneError(f"{folder} lacks {len(meta)} tensors (e.g. {meta[0]}); the folder is incomplete — "
                          "save the model again.")


def load_pipeline(path: str | Path, torch_dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """The diffusers pipeline in `path` (a pipeline or run folder, or a shipped
    teacher's name) with its transformer loaded by `load`. Shapes pipelines load
    as hprune's ShapesPipeline (float32 unless `torch_dtype`). A diffusers pipeline
    whose transformer was pruned or quantized takes block indices of the original
    model in `skip_guidance_layers` and in LoRA files (hprune.model.original_indices).
    On a CUDA device the attention kernel is picked as in `load`."""
    from hprune.toy.pipeline import PIPELINES, SHIPPED

    folder = pipeline_folder(path)
    if folder is None:
        raise HpruneError(f"{path} is neither {' nor '.join(SHIPPED)} nor a diffusers pipeline folder (no {MODEL_INDEX}); "
                          "pass a whole pipeline: its text encoders are needed.")
    class_name = json.loads((folder / MODEL_INDEX).read_text()).get("_class_name")
    shapes = class_name in PIPELINES
    dtype = torch_dtype or (torch.float32 if shapes else None)
    transformer = load(folder, torch_dtype=dtype)
    quant = quant_state(transformer)
    if quant is not None:  # the other components feed the 4-bit layers in their compute dtype
        dtype = quant[0].torch_compute_dtype
    try:
        if shapes:
            pipe = PIPELINES[class_name].from_pretrained(folder, transformer=transformer, dtype=dtype)
        else:
            from diffusers import DiffusionPipeline

            pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer, dtype=dtype)
    except (OSError, ValueError) as err:
        raise HpruneError(f"could not load the pipeline components in {folder} ({err}); copy the folder again.") from None
    pipe.set_progress_bar_config(disable=True)
    if not shapes and (steps_of(transformer, "prune") or quant is not None):
        from hprune.model.original_indices import with_original_indices

        pipe = with_original_indices(pipe)
    pipe = pipe.to(device)
    if torch.device(device).type == "cuda":
        use_fastest_attention(pipe.transformer)
    return pipe
