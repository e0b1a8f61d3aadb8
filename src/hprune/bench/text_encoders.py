"""Memory of the text encoders a user's pipeline keeps beside the transformer.

Configs typed in from the public checkpoints' config.json: CLIP ViT-L/14 and
OpenCLIP bigG text towers (SD3.5), T5-XXL v1.1 encoder (SD3.5 and FLUX).
Built with random weights; optionally T5 in 4 bits (its linears through
quantize_), since T5-XXL alone is 9 GiB in bf16.
"""

from __future__ import annotations

import gc

import torch

from hprune.bench.measure import GIB

CONFIGS = {
    "clip-l": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   projection_dim=768, max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu"),
    "clip-g": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                   projection_dim=1280, max_position_embeddings=77, vocab_size=49408, hidden_act="gelu"),
    "t5-xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
                   feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, is_encoder_decoder=False),
}
TOKENS = {"clip-l": 77, "clip-g": 77}
# transformers' T5 reads `wo.weight.dtype` in every feed-forward (and keeps `wo` in float32 for fp16:
# its _keep_in_fp32_modules), so a 4-bit module without a `weight` cannot replace it: w4fp8 keeps the
# 24 `wo` projections (1.0B of T5-XXL's 4.8B parameters) in 16 bit
T5_KEEP = {"w4fp8": ("*.wo",)}


def build_encoder(name: str, device="cuda", dtype=torch.bfloat16, **overrides):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if name == "t5-xxl":
        cls, config = T5EncoderModel, T5Config(**{**CONFIGS[name], **overrides})
    else:
        cls, config = CLIPTextModelWithProjection, CLIPTextConfig(**{**CONFIGS[name], **overrides})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return cls(config).to(dtype).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)


def encoder_memory(names: tuple[str, ...], t5_tokens: int, t5_quant: str | None) -> dict:
    """Weights of all encoders together and the peak while they encode one prompt (GiB)."""
    from hprune.quant.quantize import QuantConfig, quantize_, weight_bytes

    # a previous call's encoders (torchao's tensor subclasses sit in reference cycles) must be gone
    # before `base` is read, or their late release makes this call's peak look smaller than its weights
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    encoders, weights = {}, 0
    for name in names:
        enc = build_encoder(name)
        if name == "t5-xxl" and t5_quant:
            quantize_(enc, QuantConfig(backend=t5_quant, skip=T5_KEEP.get(t5_quant)))
        encoders[name] = enc
        weights += weight_bytes(enc)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for name, enc in encoders.items():
            ids = torch.randint(0, 32000, (1, TOKENS.get(name, t5_tokens)), device="cuda")
            enc(input_ids=ids)
    peak = torch.cuda.max_memory_allocated() - base
    del encoders
    torch.cuda.empty_cache()
    return {"encoders": list(names), "t5_quant": t5_quant or "bf16", "weights_gib": round(weights / GIB, 3), "peak_gib": round(peak / GIB, 3)}
