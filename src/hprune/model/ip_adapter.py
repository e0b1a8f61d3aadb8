"""IP-Adapters made for the original model, on a pruned transformer.

diffusers loads an IP-Adapter's per-layer weights `ip_adapter.N.*` into the N-th attention layer
of the model it loads into (FLUX: of the double blocks; SD3: of all blocks). Pruning a block or an
attention moves every later layer up. `OriginalIndicesPipeline.load_ip_adapter`
(hprune.model.original_indices) renumbers the weights with these functions before diffusers
loads them; the weights of removed layers are left out with one logged line.
"""

from __future__ import annotations

import logging

import torch.nn as nn
from accelerate import init_empty_weights

from hprune.model.original_names import OriginalNames
from hprune.core.provenance import base_config

log = logging.getLogger("hprune")


def _ip_layers(model: nn.Module) -> list[str]:
    # The attention layers diffusers numbers an IP-Adapter's `ip_adapter.N.*` weights by, in order:
    # every one but FLUX's single-stream blocks' (diffusers' _convert_ip_adapter_attn_to_diffusers).
    return [name for name in model.attn_processors if not name.startswith("single_transformer_blocks")]


def ip_adapter_positions(model: nn.Module) -> dict[int, int]:
    """Position in the original model -> position in `model`, of each IP-Adapter attention layer left."""
    config = {k: v for k, v in base_config(model).items() if k != "quantization_config"}
    with init_empty_weights(include_buffers=False):
        original = type(model).from_config(config)
    names, current = OriginalNames(model), {name: i for i, name in enumerate(_ip_layers(model))}
    translated = {old: names.translate_name(name) for old, name in enumerate(_ip_layers(original))}
    return {old: current[new] for old, new in translated.items() if new in current}


def translate_ip_adapter(state_dict: dict, positions: dict[int, int]) -> dict:
    """One IP-Adapter as diffusers reads it ({"image_proj": ..., "ip_adapter": {"N.to_k_ip.weight": ...}})
    with its per-layer weights renumbered by `positions` (from ip_adapter_positions)."""
    layers, kept = state_dict["ip_adapter"], {}
    for key, value in layers.items():
        old, _, rest = key.partition(".")
        if int(old) in positions:
            kept[f"{positions[int(old)]}.{rest}"] = value
    gone = sorted({int(k.partition(".")[0]) for k in layers} - set(positions))
    if gone:
        log.warning("hprune: left out the IP-Adapter weights of %d attention layers (original positions %s): "
                    "pruning removed them.", len(gone), ", ".join(map(str, gone)))
    return {**state_dict, "ip_adapter": kept}
