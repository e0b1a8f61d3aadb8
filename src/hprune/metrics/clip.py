"""CLIP text-image score from a local transformers CLIP folder.

`clip:/path` loads `CLIPModel` and its processor files (tokenizer and image
processor config) from `/path`, e.g. a copy of openai/clip-vit-large-patch14
saved with `save_pretrained`. Score = 100 * cos(image, text), per image, as
torchmetrics' CLIPScore but without clamping at 0, so that drops below an
unrelated-image level still rank.

Images are preprocessed in torch (resize of the short side, centre crop,
normalisation with the processor's mean and std) so that scoring stays on the
GPU with the generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hprune.core.errors import HpruneError
from hprune.metrics import Metric

BATCH = 64


def _load(path: str | None, what: str):
    from transformers import AutoProcessor, CLIPModel

    hint = f"pass --metric {what}:/path/to/folder, a transformers CLIP model saved with save_pretrained (config.json, weights, tokenizer and preprocessor files)"
    if not path:
        raise HpruneError(f"the {what} metric needs a local weights folder; {hint}.")
    if not Path(path).is_dir():
        raise HpruneError(f"{what} weights folder {path} does not exist; {hint}.")
    try:
        model = CLIPModel.from_pretrained(path)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HpruneError(f"{path} is not a usable CLIP model folder ({first[:160]}); {hint}.") from None
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise HpruneError(f"{path} lacks the tokenizer or image processor files; {hint}.")
    return model.eval(), processor


class ClipEncoder:
    """Normalised image and text embeddings of a CLIP model on one device."""

    def __init__(self, path: str | None, device: str | None, what: str = "clip"):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, processor = _load(path, what)
        self.model.to(self.device)
        self.tokenizer = processor.tokenizer
        self._image_config(processor.image_processor)

    def _image_config(self, ip) -> None:
        size = ip.size.get("shortest_edge") or min(ip.size.get("height", 224), ip.size.get("width", 224))
        crop = ip.crop_size or {"height": size, "width": size}
        self.resize, self.crop = int(size), (int(crop["height"]), int(crop["width"]))
        self.mean = torch.tensor(ip.image_mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(ip.image_std, device=self.device).view(1, 3, 1, 1)

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic", align_corners=False).clamp(0, 1)
        top, left = (x.shape[-2] - self.crop[0]) // 2, (x.shape[-1] - self.crop[1]) // 2
        x = x[..., top: top + self.crop[0], left: left + self.crop[1]]
        return ((x - self.mean) / self.std).to(self.model.dtype)

    @torch.no_grad()
    def embed(self, images: np.ndarray, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=limit, return_tensors="pt").to(self.device)
        text = self.model.get_text_features(**tokens)
        image = self.model.get_image_features(pixel_values=self.pixels(images))
        return F.normalize(_tensor(image), dim=-1), F.normalize(_tensor(text), dim=-1)

    def cosine(self, images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        if len(images) != len(prompts):
            raise HpruneError(f"got {len(images)} images for {len(prompts)} prompts; score one image per prompt.")
        out = []
        for i in range(0, len(prompts), BATCH):
            image, text = self.embed(images[i: i + BATCH], prompts[i: i + BATCH])
            out.append((image * text).sum(-1).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)


def _tensor(features) -> torch.Tensor:
    # transformers 5 may return a model output rather than a bare tensor.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class ClipScore(Metric):
    name = "clip"
    components = ("clip",)
    primary = "clip"
    alignment = "clip"

    def __init__(self, path: str | None, device: str | None = None):
        self.encoder = ClipEncoder(path, device, "clip")

    def score(self, images, prompts, scenes=None):
        return {"clip": 100.0 * self.encoder.cosine(images, prompts)}
