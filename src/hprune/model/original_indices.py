"""Tools that name blocks by their index in the unpruned model, on a pruned model.

Skip-layer guidance (`skip_guidance_layers=[7, 8, 9]`) and LoRA files
(`transformer.transformer_blocks.12.attn.to_q.lora_A.weight`) name blocks by
their index in the original model; whole-block pruning renumbers the
survivors. These functions translate with the model's `BlockMap`
(`Adapter.block_map`), built from the prune steps in its history:

- `translate_layers(model, [7, 8, 9])`: original block indices -> current ones;
- `translate_state_dict(model, lora)`: a diffusers-format (LoRA) state dict
  renamed to current indices, without what pruning removed;
- `with_original_indices(pipe)`: a pipeline whose `__call__(skip_guidance_layers=...)`,
  `load_lora_weights(...)` and `load_ip_adapter(...)` take original indices, and
  whose transformer takes ControlNet residuals made for the original model
  (hprune.model.controlnet). `hprune.load_pipeline` applies it to every pipeline
  whose transformer was pruned or quantized.

What pruning removed is left out with one logged line (logger `hprune`); an
index the original model never had raises HpruneError.
"""

from __future__ import annotations

import functools
import logging

import torch.nn as nn

from hprune.model import get_adapter
from hprune.model.original_names import OriginalNames
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.core.provenance import steps_of

log = logging.getLogger("hprune")

def translate_layers(model: nn.Module, indices, kind: str = "joint") -> list[int]:
    """Block indices of the original model (e.g. SD3.5's `skip_guidance_layers=[7, 8, 9]`)
    -> the same blocks' indices in `model`. Blocks pruning removed are left out
    (one logged line names them); an index the original model never had raises HpruneError."""
    bmap = get_adapter(model).block_map(model)
    current = {int(i): bmap.current(kind, int(i)) for i in indices}
    gone = [i for i, new in current.items() if new is None]
    if gone:
        log.warning("hprune: pruning removed %s; left out of the block list.", ", ".join(f"{kind}.{i}" for i in gone))
    return [new for new in current.values() if new is not None]


def translate_state_dict(model: nn.Module, state_dict: dict) -> dict:
    """A state dict whose keys name blocks by original index (any prefix, e.g. a diffusers/peft
    LoRA's `transformer.transformer_blocks.0.attn.to_q.lora_A.weight`) renamed to `model`'s
    current indices. Tensors of removed blocks and removed parts (a removed attn's `to_q`, a
    removed `ff`) are left out with one logged line; for a FLUX single block that lost its attn
    or mlp_proj, the input side of `proj_out` (`lora_A`) keeps only the surviving columns,
    as pruning did to the base weight. Keys must be in diffusers layout
    (`pipe.lora_state_dict(path)` converts the others)."""
    names = OriginalNames(model)
    out, dropped = {}, []
    for key, value in state_dict.items():
        new, unit = names.translate(key)
        if new is None:
            dropped.append(unit)
            continue
        out[new] = names.slice_proj_out(new, unit, value)
    if dropped:
        log.warning("hprune: left out %d of %d tensors of the state dict: they belong to %s, removed by pruning.",
                    len(dropped), len(state_dict), ", ".join(sorted({_name(u) for u in dropped})))
    return out


def _name(unit: Unit) -> str:
    return f"{unit.kind}.{unit.index}" if unit.is_block else unit.key


def _translate_metadata(names: OriginalNames, metadata: dict | None) -> dict | None:
    """A LoRA's adapter metadata (peft LoraConfig fields) with module names in current indices."""
    if not metadata:
        return metadata
    out = {}
    for field, value in metadata.items():
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = [new for new in map(names.translate_name, value) if new is not None]
        elif isinstance(value, dict):
            value = {new: v for k, v in value.items() if (new := names.translate_name(k)) is not None}
        out[field] = value
    return out


def _translate_lora(model: nn.Module, loaded, return_alphas: bool = False, return_lora_metadata: bool = False):
    """What a pipeline's `lora_state_dict` returned — the state dict, then the network alphas
    and the adapter metadata when asked for — in current indices."""
    if not (return_alphas or return_lora_metadata):
        return translate_state_dict(model, loaded)
    names = OriginalNames(model)
    state, *rest = loaded
    out = [translate_state_dict(model, state)]
    if return_alphas:  # keys such as `transformer.transformer_blocks.0.attn.to_q.alpha`
        alphas = rest.pop(0)
        out.append(alphas and {new: v for k, v in alphas.items() if (new := names.translate(k)[0]) is not None})
    if return_lora_metadata:
        out.append(_translate_metadata(names, rest.pop(0)))
    return tuple(out)


class OriginalIndicesPipeline:
    """Mixed into a diffusers pipeline class by `with_original_indices`: block indices given to
    the pipeline are those of the original (unpruned) transformer."""

    def __call__(self, *args, **kwargs):
        layers = kwargs.get("skip_guidance_layers")
        if layers is not None:
            kwargs["skip_guidance_layers"] = translate_layers(self.transformer, layers) or None
        return super().__call__(*args, **kwargs)

    def load_lora_weights(self, *args, **kwargs):
        """diffusers' `load_lora_weights`, with the LoRA's keys in original indices translated
        (`translate_state_dict`) after diffusers reads and converts them."""
        _refuse_unfused_quantized(self.transformer)
        read, transformer = type(self).lora_state_dict, self.transformer
        # diffusers' load_lora_weights reads the file through self.lora_state_dict: shadow it for this call
        self.__dict__["lora_state_dict"] = lambda *a, **kw: _translate_lora(
            transformer, read(*a, **kw), kw.get("return_alphas", False), kw.get("return_lora_metadata", False))
        try:
            return super().load_lora_weights(*args, **kwargs)
        finally:
            self.__dict__.pop("lora_state_dict", None)

    def load_ip_adapter(self, *args, **kwargs):
        """diffusers' `load_ip_adapter`, with the adapter's per-layer weights (numbered by the
        attention layers of the original model) moved to the same layers of this one."""
        from hprune.model.ip_adapter import ip_adapter_positions, translate_ip_adapter

        transformer = self.transformer
        load, positions = transformer._load_ip_adapter_weights, ip_adapter_positions(transformer)
        # diffusers hands the read weights to transformer._load_ip_adapter_weights: shadow it for this call
        transformer.__dict__["_load_ip_adapter_weights"] = lambda state_dicts, **kw: load(
            [translate_ip_adapter(sd, positions) for sd in (state_dicts if isinstance(state_dicts, list) else [state_dicts])], **kw)
        try:
            return super().load_ip_adapter(*args, **kwargs)
        finally:
            transformer.__dict__.pop("_load_ip_adapter_weights", None)


# 4-bit layers peft has no LoRA layer for: hprune's own w4fp8 kernel (not an nn.Linear, no `weight`
# for diffusers' FLUX loader) and torchao int4 (peft's TorchaoLoraLinear takes int8 only).
# bnb-nf4 (peft's Linear4bit) and torchao-fp8 pass through to diffusers/peft.
NO_LORA_BACKENDS = ("w4fp8", "torchao-int4", "torchao-int4-tinygemm")


def _refuse_unfused_quantized(model: nn.Module) -> None:
    steps = steps_of(model, "quantize")  # quantize_ records its config: read the backend there
    backend = steps[-1]["config"]["backend"] if steps else None
    if backend in NO_LORA_BACKENDS:
        raise HpruneError(f"a LoRA cannot be loaded into a {backend}-quantized transformer; fuse it into "
                          "the 16-bit model before quantizing (pipe.load_lora_weights(...); pipe.fuse_lora(); "
                          "pipe.unload_lora_weights(); then `hprune quantize` or hprune.quantize_(pipe.transformer, ...)).")


@functools.cache
def _subclass(cls: type) -> type:
    # Same name as the diffusers class, so save_pretrained writes the same model_index.json.
    return type(cls.__name__, (OriginalIndicesPipeline, cls), {"__module__": cls.__module__})


def with_original_indices(pipe):
    """`pipe`, in place, taking skip-layer guidance indices and LoRA keys in the original model's
    block numbering (its class becomes a subclass of its own class of the same name); its
    transformer spreads ControlNet residuals made for the original model over its blocks as the
    original model would (hprune.model.controlnet), also in pipelines built from its components."""
    from hprune.model.controlnet import install_controlnet_translation

    if not isinstance(pipe, OriginalIndicesPipeline):
        pipe.__class__ = _subclass(type(pipe))
    install_controlnet_translation(pipe.transformer)
    return pipe
