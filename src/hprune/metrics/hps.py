"""Human-preference scores from CLIP-architecture reward models, local weights.

- `hps:/path`: HPSv2 (an OpenCLIP ViT-H/14 fine-tuned on human preferences)
  converted to a transformers `CLIPModel` folder; score = 100 * cos(image,
  text), the scale at which HPSv2 is reported (SD3.5 Large Turbo: ~30).
- `pickscore:/path`: PickScore (a CLIP ViT-H/14 fine-tuned on Pick-a-Pic);
  score = logit_scale * cos, as its authors compute it.

Both are reward models that judge image quality and prompt fit together, the
role HPSv2 plays in the paper's analysis. ImageReward proper needs BLIP with a
reward head and is not covered.
"""

from __future__ import annotations

from hprune.metrics import Metric
from hprune.metrics.clip import ClipEncoder

STYLES = ("hps", "pickscore")


class PreferenceScore(Metric):
    def __init__(self, path: str | None, device: str | None = None, style: str = "hps"):
        assert style in STYLES, style
        self.name = style
        self.components = (style,)
        self.primary = self.alignment = style
        self.encoder = ClipEncoder(path, device, style)
        model = self.encoder.model
        self.scale = 100.0 if style == "hps" else float(model.logit_scale.detach().exp())

    def score(self, images, prompts, scenes=None):
        return {self.name: self.scale * self.encoder.cosine(images, prompts)}
