"""The sampling loop: prompts and seeds -> images, one loop for every stage that draws.

The contribution analysis, distillation's teacher samples, `hprune generate` and `hprune run`
all draw through `make_sampler`, so an image drawn by one stage is the image any other draws
from the same prompt, seed and settings. Each image depends on its own seed alone (one
generator per image), never on its batch or the batch size.

- diffusers SD3 / FLUX pipelines (`DiffusersSampler`): each batch's prompts are encoded once
  and every call reuses the embeddings (the analysis draws the same prompts once per variant);
- pipelines that draw from per-image seeds themselves, `pipe(prompts, num_inference_steps,
  guidance_scale, seeds)` (`ShapesSampler`: the shapes teachers' own loop, ShapesPipeline.__call__).

Nothing here imports the shapes testbed: a pipeline is told apart by what it can be called with.
torch loads on first draw, so `hprune generate --help` (which reads this module) stays light.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from hprune.core.errors import HpruneError
from hprune.model import get_adapter


SHAPES_STEPS = 8  # the shapes teachers' own schedule
FEW_STEPS = 4  # real models: SD3.5 Large Turbo, FLUX.1 schnell and other few-step checkpoints


@dataclass(frozen=True)
class SamplingConfig:
    steps: int | None = None  # None: the pipeline's default (shapes: 8) or 4 (few-step real models)
    guidance: float | None = None  # None: the pipeline's default (shapes) or 0
    size: int | None = None  # image side for diffusers pipelines; None: the pipeline's default
    max_sequence_length: int | None = None  # None: the pipeline's, at most 256 (SD3) / 512 (FLUX)
    batch_size: int = 64


@dataclass(frozen=True)
class PromptSeed:
    prompt: str
    seed: int


def is_diffusers(pipe) -> bool:
    """A diffusers SD3/FLUX pipeline (ShapesPipeline and stand-ins have no encode_prompt)."""
    return hasattr(pipe, "encode_prompt")


def default_steps(pipe) -> int:
    """The sampling steps a Sampler of `pipe` takes when SamplingConfig.steps is None."""
    return FEW_STEPS if is_diffusers(pipe) else SHAPES_STEPS


class Sampler:
    """Draws the images of `items`, batch by batch, in order."""

    def __init__(self, pipe, config: SamplingConfig, items: list[PromptSeed]):
        self.pipe, self.config = pipe, config
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)  # one bar: the caller's
        self.batches = [items[i: i + config.batch_size] for i in range(0, len(items), config.batch_size)]
        self.cond = [self.encode([it.prompt for it in batch]) for batch in self.batches]

    @property
    def transformer(self):
        return self.pipe.transformer

    def images(self, on_step=None) -> np.ndarray:
        """uint8 (N, H, W, 3), one image per item, in order. `on_step(fraction)` is called
        after each denoising step with the share of the whole set it was."""
        tick = None if on_step is None else (lambda: on_step(1 / (len(self.batches) * self.steps)))
        return np.concatenate([self.sample(cond, [it.seed for it in batch], tick)
                               for batch, cond in zip(self.batches, self.cond)])

    @property
    def steps(self) -> int:
        raise NotImplementedError

    def encode(self, prompts):
        raise NotImplementedError

    def sample(self, cond, seeds: list[int], tick=None) -> np.ndarray:
        raise NotImplementedError


class ShapesSampler(Sampler):
    """A pipeline that draws from per-image seeds in its own loop (the shapes teachers'
    ShapesPipeline.__call__, which encodes the prompts itself: `cond` is the prompts)."""

    def encode(self, prompts):
        return prompts

    @property
    def guidance(self) -> float:
        g = self.config.guidance
        return self.pipe.config.guidance_scale if g is None else g

    @property
    def steps(self) -> int:
        return self.config.steps or SHAPES_STEPS

    def sample(self, cond, seeds, tick=None):
        # guidance None: the pipeline's own default (a stand-in need not have a config)
        images = self.pipe(cond, num_inference_steps=self.steps, guidance_scale=self.config.guidance, seeds=seeds).images
        for _ in range(self.steps if tick else 0):  # the pipeline's loop takes no callback
            tick()
        return images


class DiffusersSampler(Sampler):
    """StableDiffusion3Pipeline / FluxPipeline called with cached prompt embeddings;
    `call_kwargs` go to every pipeline call (e.g. SD3's skip_guidance_layers)."""

    def __init__(self, pipe, config: SamplingConfig, items: list[PromptSeed], call_kwargs: dict | None = None):
        self.call_kwargs = call_kwargs or {}
        super().__init__(pipe, config, items)

    @property
    def guidance(self) -> float:
        return 0.0 if self.config.guidance is None else self.config.guidance

    def encode(self, prompts):
        return encode_prompts(self.pipe, prompts, self.config.max_sequence_length, self.guidance)

    @property
    def family(self) -> str:
        return get_adapter(self.pipe.transformer).family

    @property
    def steps(self) -> int:
        return self.config.steps or FEW_STEPS

    def sample(self, cond, seeds, tick=None):
        size = self.config.size

        def on_step_end(_pipe, _step, _t, kwargs):
            tick()
            return kwargs

        out = self._call(cond, seeds, height=size, width=size, output_type="np",
                         callback_on_step_end=on_step_end if tick else None, **self.call_kwargs)
        return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)

    def latents(self, cond, seeds):
        """(N, C, H, W) final latents in the transformer's space (before the VAE), as
        distillation targets; FLUX's packed tokens are unpacked."""
        pipe, size = self.pipe, self.config.size or self.pipe.default_sample_size * self.pipe.vae_scale_factor
        out = self._call(cond, seeds, height=size, width=size, output_type="latent").images
        return pipe._unpack_latents(out, size, size, pipe.vae_scale_factor) if self.family == "flux" else out

    def _call(self, cond, seeds, **kwargs):
        import torch

        # One generator per image: an image depends on its seed, not its batch.
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        with torch.no_grad():
            return self.pipe(**cond, num_inference_steps=self.steps, guidance_scale=self.guidance, generator=gens,
                             **kwargs)


def max_sequence_length(pipe, override: int | None = None) -> int:
    """The T5 token length every stage encodes prompts with (sampling, analysis, distillation
    data), so a student is trained on the embeddings it will be sampled with: `override`, else
    the family pipeline's own default (SD3 256, FLUX 512; diffusers' `__call__` defaults)
    capped by the tokenizer's `model_max_length`."""
    default = 512 if get_adapter(pipe.transformer).family == "flux" else 256
    tokenizer = getattr(pipe, "tokenizer_3", None) or getattr(pipe, "tokenizer_2", None)
    limit = getattr(tokenizer, "model_max_length", default) or default
    return override or min(default, limit)


def encode_prompts(pipe, prompts: list[str], max_length: int | None = None, guidance: float = 0.0) -> dict:
    """A diffusers SD3 / FLUX pipeline's prompt embeddings for `prompts`, as pipeline keyword
    arguments: `prompt_embeds` (B, T, D) and `pooled_prompt_embeds` (B, D), plus the negative
    (empty-prompt) pair when `guidance` > 1 turns on SD3's classifier-free guidance.
    Every text encoder gets the same prompt; T5 length by `max_sequence_length`."""
    kw = dict(device=pipe._execution_device, max_sequence_length=max_sequence_length(pipe, max_length))
    if get_adapter(pipe.transformer).family == "flux":
        embeds, pooled, _ids = pipe.encode_prompt(prompts, prompts, **kw)
        return dict(prompt_embeds=embeds, pooled_prompt_embeds=pooled)
    cfg = guidance > 1.0
    out = pipe.encode_prompt(prompts, prompts, prompts, do_classifier_free_guidance=cfg,
                             negative_prompt=[""] * len(prompts) if cfg else None, **kw)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return {k: v for k, v in zip(names, out) if v is not None}


def check_size(pipe, size: int | None) -> None:
    """Before anything is drawn: `--size` fits this diffusers pipeline's transformer."""
    if not is_diffusers(pipe):
        return
    cfg = pipe.transformer.config
    if not getattr(cfg, "pos_embed_max_size", None):
        return  # FLUX: rotary positions take any size
    step = pipe.vae_scale_factor * cfg.patch_size  # pixels per token side
    largest = cfg.pos_embed_max_size * step
    if size is None:  # the pipeline's default size must fit too (a table cropped by hprune quantize --max-size)
        default = getattr(pipe, "default_sample_size", None)
        if default and default * pipe.vae_scale_factor > largest:
            raise HpruneError(f"this model's position table holds images up to {largest} pixels a side (cropped "
                              f"with --max-size), below the pipeline's default {default * pipe.vae_scale_factor}; "
                              f"pass --size {largest} or less.")
        return
    if size > largest:
        raise HpruneError(f"--size {size} is too big for this model: its pos_embed_max_size "
                          f"{cfg.pos_embed_max_size} allows at most --size {largest}.")
    if size % step:
        raise HpruneError(f"--size {size} must be a multiple of {step} for this model "
                          f"(VAE factor {pipe.vae_scale_factor} x patch {cfg.patch_size}); pass --size "
                          f"{max(step, size // step * step)}.")


def make_sampler(pipe, config: SamplingConfig, items: list[PromptSeed], call_kwargs: dict | None = None) -> Sampler:
    if is_diffusers(pipe):
        get_adapter(pipe.transformer)  # an unsupported transformer class says so now
        return DiffusersSampler(pipe, config, items, call_kwargs)
    if not _draws_from_seeds(pipe):
        raise HpruneError(f"cannot draw images with a {type(pipe).__name__}; pass a shapes teacher or a diffusers "
                          "SD3/FLUX pipeline.")
    return ShapesSampler(pipe, config, items)


def _draws_from_seeds(pipe) -> bool:
    try:
        return "seeds" in inspect.signature(pipe).parameters
    except (TypeError, ValueError):  # not callable, or no signature to read
        return False
