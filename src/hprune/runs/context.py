"""What every stage of a run reads: the model, the ratio, the recipe, the folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hprune.folders.run_layout import RunLayout
from hprune.runs.recipe import Recipe


@dataclass
class RunContext:
    model: str  # a shipped teacher's name or a diffusers pipeline folder
    ratio: float
    recipe: Recipe
    layout: RunLayout
    device: str
    progress: bool = True
    _pipe: object = field(default=None, repr=False)

    @property
    def is_shapes(self) -> bool:
        from hprune.toy.pipeline import SHIPPED

        return self.model in SHIPPED

    @property
    def dtype(self):
        import torch

        return torch.bfloat16 if self.device == "cuda" and not self.is_shapes else torch.float32

    def pipe(self):
        """The teacher's pipeline, loaded once per process."""
        if self._pipe is None:
            from hprune.folders import load_pipeline

            self._pipe = load_pipeline(self.model, torch_dtype=self.dtype, device=self.device)
        return self._pipe

    def load_model(self, folder: Path):
        """A stage's model (a model folder hprune wrote), on the run's device."""
        from hprune.folders import load

        return load(folder, torch_dtype=self.dtype, device=self.device).eval()

    def norm_means(self):
        import torch

        path = self.layout.analysis / "norm_means.pt"
        return torch.load(path, weights_only=True) if path.is_file() else None
