"""Calibration inputs for GPTQ rounding: the model draws a few prompts, and every linear layer's
inputs over those sampling runs make its H = X^T X (hprune.quant.gptq).

The model draws with its own pipeline through hprune.model.sampling (the loop every stage
draws with), so the inputs are the ones it sees when it generates: every denoising step, with
guidance where the pipeline uses it. Prompts: the shapes world's train split (8 per category)
for a shapes teacher or student, else the 64 shipped calibration prompts
(hprune/runs/prompts.txt) or a user's file; never an evaluation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hprune.quant.names import CALIBRATION_IMAGES


@dataclass
class Calibration:
    """Draws `prompts` (image i from seed `seeds[i]`) with `pipe`, `steps` denoising steps,
    `batch_size` images at a time, with the model being quantized as the pipeline's transformer."""

    pipe: object
    prompts: list[str]
    seeds: list[int] = field(default_factory=list)
    steps: int | None = None  # None: the pipeline's own (shapes 8, real few-step models 4)
    batch_size: int = 16
    progress: bool = False  # a bar per calibration pass

    def __post_init__(self):
        from hprune.model.sampling import default_steps

        self.seeds = self.seeds or list(range(len(self.prompts)))
        self.steps = self.steps or default_steps(self.pipe)

    def run(self, model) -> None:
        from hprune.generate.images import GenerationConfig, generate_images

        original, self.pipe.transformer = self.pipe.transformer, model
        try:
            generate_images(self.pipe, self.prompts, self.seeds, GenerationConfig(steps=self.steps, batch_size=self.batch_size),
                            progress=self.progress)
        finally:
            self.pipe.transformer = original

    def describe(self) -> dict:
        """What the quantize step records in the model's history."""
        return {"images": len(self.prompts), "steps": self.steps, "first_prompt": self.prompts[0] if self.prompts else None}


def default_calibration(pipe, prompts_file: str | None = None, images: int = CALIBRATION_IMAGES,
                        batch_size: int = 16) -> Calibration:
    """The calibration set for `pipe`: `images` prompts from `prompts_file` (one a line, cycled),
    or when None the shapes train split (a shapes pipeline) or the shipped prompts.
    Raises HpruneError for a missing or empty prompts file."""
    from hprune.model.sampling import is_diffusers

    if prompts_file is None and not is_diffusers(pipe):
        from hprune.toy.splits import eval_set

        items = eval_set("train", -(-images // 8))[:images]  # balanced over the 8 categories
        return Calibration(pipe, [i.prompt for i in items], [i.seed for i in items], batch_size=batch_size)
    from hprune.runs.prompts import read_prompts

    lines = read_prompts(prompts_file)
    return Calibration(pipe, [lines[i % len(lines)] for i in range(images)], batch_size=batch_size)
