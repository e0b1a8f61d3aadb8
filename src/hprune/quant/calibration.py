"""Calibration inputs for GPTQ rounding: the model draws a few prompts, and every linear layer's
inputs over those sampling runs make its H = X^T X (hprune.quant.gptq).

The model draws with its own pipeline through hprune.model.sampling (the loop every stage
draws with, as `hprune generate` does), so the inputs are the ones it sees when it generates: every denoising step, with
guidance where the pipeline uses it. Prompts: the shapes world's train split (8 per category)
for a shapes teacher or student, else the 64 shipped calibration prompts
(hprune/runs/prompts.txt) or a user's file; never an evaluation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hprune.core.errors import HpruneError
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
        from tqdm.auto import tqdm

        from hprune.model.sampling import PromptSeed, SamplingConfig, make_sampler

        items = [PromptSeed(p, s) for p, s in zip(self.prompts, self.seeds)]
        original, self.pipe.transformer = self.pipe.transformer, model
        try:
            with tqdm(total=1.0, desc="calibration", disable=not self.progress,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:
                make_sampler(self.pipe, SamplingConfig(steps=self.steps, batch_size=self.batch_size), items).images(bar.update)
        finally:
            self.pipe.transformer = original

    def describe(self) -> dict:
        """What the quantize step records in the model's history."""
        return {"images": len(self.prompts), "steps": self.steps, "first_prompt": self.prompts[0] if self.prompts else None}


def default_calibration(pipe, prompts: list[str] | None = None, images: int = CALIBRATION_IMAGES,
                        batch_size: int = 16) -> Calibration:
    """The calibration set for `pipe`: `images` of `prompts` (cycled), image i from seed i; or, with
    no prompts, the shapes world's train split (a shapes pipeline: balanced over its 8 categories).
    A diffusers pipeline needs prompts (hprune.runs.prompts.read_prompts gives the shipped ones).
    Raises HpruneError for no prompts where they are needed."""
    from hprune.model.sampling import is_diffusers

    if prompts is None and not is_diffusers(pipe):
        from hprune.toy.splits import eval_set

        items = eval_set("train", -(-images // 8))[:images]
        return Calibration(pipe, [i.prompt for i in items], [i.seed for i in items], batch_size=batch_size)
    if not prompts:
        raise HpruneError("GPTQ calibration of a diffusers pipeline needs prompts: pass a prompt file "
                          "(one prompt a line), e.g. hprune's shipped hprune/runs/prompts.txt.")
    return Calibration(pipe, [prompts[i % len(prompts)] for i in range(images)], batch_size=batch_size)
