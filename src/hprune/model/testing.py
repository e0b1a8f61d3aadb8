"""Tiny random-weight models and pipelines of each family, built locally from
config: every code path for real models runs on CPU in seconds, no download."""

from __future__ import annotations

import torch

from hprune.model.flow import grid_ids

TINY_WIDTH = 16  # heads * head_dim


def _seeded(seed: int):
    torch.manual_seed(seed)


def tiny_sd3(num_layers: int = 4, dual_attention_layers: tuple = (), seed: int = 0, **overrides):
    from diffusers import SD3Transformer2DModel

    _seeded(seed)
    config = dict(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=num_layers,
                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                  caption_projection_dim=TINY_WIDTH, pooled_projection_dim=16, pos_embed_max_size=16,
                  qk_norm="rms_norm", dual_attention_layers=dual_attention_layers)
    return SD3Transformer2DModel(**{**config, **overrides}).eval()


def tiny_sd35_medium(num_layers: int = 4, seed: int = 0):
    """SD3.5 Medium's layout: the first blocks have dual attention (`attn2`)."""
    return tiny_sd3(num_layers=num_layers, dual_attention_layers=tuple(range(num_layers // 2)), seed=seed)


def tiny_flux(num_layers: int = 2, num_single_layers: int = 3, seed: int = 0, **overrides):
    from diffusers import FluxTransformer2DModel

    _seeded(seed)
    config = dict(patch_size=1, in_channels=4, out_channels=4, num_layers=num_layers,
                  num_single_layers=num_single_layers, attention_head_dim=8, num_attention_heads=2,
                  joint_attention_dim=32, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4))
    return FluxTransformer2DModel(**{**config, **overrides}).eval()


TINY_MODELS = {"sd3": tiny_sd3, "sd35-medium": tiny_sd35_medium, "flux": tiny_flux}


def dummy_inputs(model, batch: int = 2, seed: int = 0, text_len: int = 6) -> dict:
    """Keyword arguments for one forward call of a tiny (or any) model."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    timestep = torch.rand(batch, generator=gen) * 1000
    if type(model).__name__ == "FluxTransformer2DModel":
        side = 4
        return dict(
            hidden_states=torch.randn(batch, side * side, cfg.in_channels, generator=gen),
            encoder_hidden_states=torch.randn(batch, text_len, cfg.joint_attention_dim, generator=gen),
            pooled_projections=torch.randn(batch, cfg.pooled_projection_dim, generator=gen),
            timestep=timestep / 1000,
            img_ids=grid_ids(side, side),
            txt_ids=torch.zeros(text_len, 3),
            guidance=torch.full((batch,), 3.5) if cfg.guidance_embeds else None,  # FLUX.1-dev style
            return_dict=False,
        )
    side = cfg.sample_size
    return dict(
        hidden_states=torch.randn(batch, cfg.in_channels, side, side, generator=gen),
        encoder_hidden_states=torch.randn(batch, text_len, cfg.joint_attention_dim, generator=gen),
        pooled_projections=torch.randn(batch, cfg.pooled_projection_dim, generator=gen),
        timestep=timestep,
        return_dict=False,
    )



TINY_WORDS = "a an the red green blue yellow circle square triangle photo of cat dog left right on".split()


def tiny_tokenizer(max_length: int = 16):
    """A word-level fast tokenizer built in memory (no vocabulary download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = {tok: i for i, tok in enumerate(specials + TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", bos_token="<s>", model_max_length=max_length)


def _tiny_clip(hidden: int, projection: bool, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _seeded(seed)
    cfg = CLIPTextConfig(vocab_size=len(TINY_WORDS) + 4, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                         projection_dim=hidden, pad_token_id=0, eos_token_id=1, bos_token_id=3)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(cfg).eval()


def _tiny_t5(d_model: int, seed: int):
    from transformers import T5Config, T5EncoderModel

    _seeded(seed)
    cfg = T5Config(vocab_size=len(TINY_WORDS) + 4, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1,
                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(cfg).eval()


def _tiny_vae(latent_channels: int, seed: int):
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL(block_out_channels=(4,), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                         norm_num_groups=1, sample_size=16, shift_factor=0.0, scaling_factor=1.0).eval()


def tiny_pipeline(family: str = "sd3", seed: int = 0, transformer=None):
    """A full diffusers pipeline (transformer, text encoders, VAE, scheduler); `transformer`
    replaces the family's tiny one (e.g. tiny_sd3(num_layers=10))."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    if family == "flux":
        return FluxPipeline(transformer=transformer or tiny_flux(seed=seed), scheduler=scheduler,
                            text_encoder=_tiny_clip(8, False, seed), tokenizer=tiny_tokenizer(),
                            text_encoder_2=_tiny_t5(32, seed), tokenizer_2=tiny_tokenizer(),
                            vae=_tiny_vae(1, seed))
    transformer = transformer or TINY_MODELS[family](seed=seed)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler,
                                    text_encoder=_tiny_clip(8, True, seed), tokenizer=tiny_tokenizer(),
                                    text_encoder_2=_tiny_clip(8, True, seed + 1), tokenizer_2=tiny_tokenizer(),
                                    text_encoder_3=_tiny_t5(32, seed), tokenizer_3=tiny_tokenizer(),
                                    vae=_tiny_vae(4, seed))


def tiny_generate(pipe, prompt: str = "a red circle", seed: int = 0, steps: int = 2, **overrides):
    """One small image through the real pipeline call; returns a float array. `overrides`
    go to the pipeline call (e.g. guidance_scale=2.0, skip_guidance_layers=[1])."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = dict(height=16, width=16, num_inference_steps=steps, generator=gen, output_type="np",
                  max_sequence_length=16, guidance_scale=0.0)
    return pipe(prompt, **{**kwargs, **overrides}).images[0]


CLIP_WORDS = ["a", "red", "blue", "green", "circle", "square", "triangle", "left", "of", "two", "photo"]


def save_tiny_clip(folder, seed=0, projection=16):
    """A random-weight CLIP (model, BPE tokenizer, image processor) saved like a real one into
    `folder` (a Path): what `--metric clip:FOLDER` reads. Returns `folder`."""
    import json

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = sorted({c for w in CLIP_WORDS for c in w})
    vocab = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters), *(w + "</w>" for w in CLIP_WORDS)]
    merges = _merges(CLIP_WORDS)
    for m in merges:
        token = m.replace(" ", "")
        if token not in vocab:
            vocab.append(token)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)).save_pretrained(folder)
    return folder


def _merges(words):
    """BPE merges that rebuild each whole word left to right."""
    merges = []
    for w in words:
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    return merges
