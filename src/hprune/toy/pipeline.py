"""Diffusers pipelines for the shapes teachers, and `load_pipeline`.

A teacher folder is a plain diffusers pipeline folder: `model_index.json`,
`transformer/` (SD3Transformer2DModel or FluxTransformer2DModel), `text_encoder/`
(ShapesTextEncoder) and `scheduler/` (FlowMatchEulerDiscreteScheduler). The
models work in pixel space: images in [-1, 1], 3 channels, `image_size` square.

Both families share the sampling loop; each only says how to ask its
transformer for the velocity. The flow convention is diffusers':
x_sigma = (1 - sigma) * image + sigma * noise, the model predicts noise - image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from hprune.core.errors import HpruneError
from hprune.model.flow import flux_velocity, sd3_velocity
from hprune.toy.text_encoder import ShapesTextEncoder

CHECKPOINTS = Path(__file__).parent / "checkpoints"
SHIPPED = ("shapes-sd3", "shapes-flux")


class ShapesPipeline(DiffusionPipeline):
    """Text -> image sampling with a flow-matching Euler scheduler."""

    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, transformer, text_encoder: ShapesTextEncoder, scheduler: FlowMatchEulerDiscreteScheduler,
                 guidance_scale: float = 1.0, image_size: int = 64):
        super().__init__()
        self.register_modules(transformer=transformer, text_encoder=text_encoder, scheduler=scheduler)
        self.register_to_config(guidance_scale=guidance_scale, image_size=image_size)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, seq: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Predicted noise - image for images x (B, 3, H, W) at noise levels sigma (B,) in [0, 1]."""
        raise NotImplementedError

    def initial_noise(self, seeds: list[int]) -> torch.Tensor:
        # One CPU generator per image: an image depends on its seed only, not on
        # the batch it was drawn in or the device.
        size = self.config.image_size
        noise = [torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device)

    def _guided_velocity(self, x, sigma, cond, uncond, guidance_scale):
        dtype = self.transformer.dtype
        if uncond is None:
            return self.velocity(x.to(dtype), sigma.to(dtype), *cond).float()
        v = self.velocity(torch.cat([x, x]).to(dtype), torch.cat([sigma, sigma]).to(dtype),
                          torch.cat([cond[0], uncond[0]]), torch.cat([cond[1], uncond[1]])).float()
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 8, guidance_scale: float | None = None,
                 seeds: list[int] | None = None, output_type: str = "np") -> ImagePipelineOutput:
        """Images for the prompts; `output_type` "np" gives uint8 (B, H, W, 3), "pt" floats in [-1, 1]."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = list(range(len(prompts))) if seeds is None else list(seeds)
        if len(seeds) != len(prompts):
            raise HpruneError(f"got {len(seeds)} seeds for {len(prompts)} prompts; pass one seed per prompt.")
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        cond = self.text_encoder.encode(prompts)
        uncond = self.text_encoder.encode([""] * len(prompts)) if scale != 1.0 else None
        x = self.initial_noise(seeds)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in self.scheduler.timesteps:
            sigma = (t / self.scheduler.config.num_train_timesteps).expand(len(prompts))
            v = self._guided_velocity(x, sigma, cond, uncond, scale)
            x = self.scheduler.step(v, t, x).prev_sample
        images = x.clamp(-1, 1)
        if output_type == "pt":
            return ImagePipelineOutput(images=images)
        return ImagePipelineOutput(images=to_uint8(images))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (B, 3, H, W) -> uint8 (B, H, W, 3)."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def to_model_space(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    pixels = torch.as_tensor(images)
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1


class ShapesSD3Pipeline(ShapesPipeline):
    """SD3Transformer2DModel in pixel space; its patch embedder patchifies."""

    def velocity(self, x, sigma, seq, pooled):
        return sd3_velocity(self.transformer, x, sigma, seq, pooled)


class ShapesFluxPipeline(ShapesPipeline):
    """FluxTransformer2DModel on packed pixel patches (like FLUX packs latents 2x2)."""

    def velocity(self, x, sigma, seq, pooled):
        return flux_velocity(self.transformer, x, sigma, seq, pooled)


PIPELINES = {"ShapesSD3Pipeline": ShapesSD3Pipeline, "ShapesFluxPipeline": ShapesFluxPipeline}
FAMILIES = {"sd3": ShapesSD3Pipeline, "flux": ShapesFluxPipeline}


@dataclass(frozen=True)
class ArchConfig:
    """Sizes of a shapes teacher: transformer, text encoder, sampler defaults."""

    family: str
    width: int = 128
    head_dim: int = 32
    num_layers: int = 16  # SD3 joint blocks, or FLUX double-stream blocks
    num_single_layers: int = 0  # FLUX single-stream blocks
    image_size: int = 64
    patch_size: int = 4
    text_width: int = 128
    text_layers: int = 2
    max_length: int = 24
    shift: float = 1.0
    guidance_scale: float = 1.0

    def __post_init__(self):
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if self.width % self.head_dim:
            problems.append(f"width {self.width} must be a multiple of head_dim {self.head_dim}")
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.family == "flux" and (self.head_dim % 4 or self.num_single_layers < 1):
            problems.append("flux needs head_dim divisible by 4 and at least one single block")
        if problems:
            raise HpruneError("; ".join(problems) + ".")


def _sd3_transformer(arch: ArchConfig) -> SD3Transformer2DModel:
    grid = arch.image_size // arch.patch_size
    return SD3Transformer2DModel(
        sample_size=arch.image_size, patch_size=arch.patch_size, in_channels=3, out_channels=3,
        num_layers=arch.num_layers, attention_head_dim=arch.head_dim, num_attention_heads=arch.width // arch.head_dim,
        joint_attention_dim=arch.text_width, caption_projection_dim=arch.width, pooled_projection_dim=arch.text_width,
        pos_embed_max_size=grid, qk_norm="rms_norm")


def _flux_transformer(arch: ArchConfig) -> FluxTransformer2DModel:
    # Rotary axes (unused frame axis, row, col) must add up to the head dim.
    row = col = arch.head_dim * 3 // 8
    return FluxTransformer2DModel(
        patch_size=1, in_channels=3 * arch.patch_size**2, num_layers=arch.num_layers,
        num_single_layers=arch.num_single_layers, attention_head_dim=arch.head_dim,
        num_attention_heads=arch.width // arch.head_dim, joint_attention_dim=arch.text_width,
        pooled_projection_dim=arch.text_width, guidance_embeds=False,
        axes_dims_rope=(arch.head_dim - row - col, row, col))


def build_pipeline(arch: ArchConfig, vocabulary: tuple[str, ...]) -> ShapesPipeline:
    """A fresh, randomly initialised teacher pipeline."""
    transformer = _sd3_transformer(arch) if arch.family == "sd3" else _flux_transformer(arch)
    text_encoder = ShapesTextEncoder(vocabulary=tuple(vocabulary), max_length=arch.max_length, width=arch.text_width,
                                     num_layers=arch.text_layers, num_heads=max(1, arch.text_width // 32),
                                     joint_attention_dim=arch.text_width, pooled_projection_dim=arch.text_width)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=arch.shift)
    return FAMILIES[arch.family](transformer, text_encoder, scheduler, guidance_scale=arch.guidance_scale,
                                 image_size=arch.image_size)


def resolve(name_or_path: str | Path) -> Path:
    """A shipped teacher's name or a pipeline folder -> the folder."""
    if str(name_or_path) in SHIPPED:
        path = CHECKPOINTS / str(name_or_path)
        if not (path / "model_index.json").is_file():
            raise HpruneError(f"the shipped checkpoint {name_or_path} is missing from {path}; reinstall hprune "
                              f"or train it with `python -m hprune.toy.train --family {str(name_or_path)[7:]}`.")
        return path
    path = Path(name_or_path)
    if not (path / "model_index.json").is_file():
        raise HpruneError(f"{name_or_path} is neither {' nor '.join(SHIPPED)} nor a pipeline folder with a "
                          "model_index.json; pass one of those.")
    return path


def load_pipeline(name_or_path: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> ShapesPipeline:
    """Load `shapes-sd3`, `shapes-flux` or a saved, unmodified shapes pipeline folder.
    Folders that hprune pruned, distilled or quantized load with `hprune.load_pipeline`."""
    path = resolve(name_or_path)
    if (path / "transformer" / "hprune.json").is_file():
        raise HpruneError(f"{path} holds a model changed by hprune; load it with hprune.load_pipeline.")
    class_name = json.loads((path / "model_index.json").read_text()).get("_class_name")
    if class_name not in PIPELINES:
        raise HpruneError(f"{path} holds a {class_name} pipeline; load_pipeline reads only {sorted(PIPELINES)}.")
    try:
        pipe = PIPELINES[class_name].from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise HpruneError(f"could not load the pipeline in {path} ({err}); the folder looks damaged, copy it again.")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
