"""Distillation data: clean inputs and their text conditioning, precomputed
once and cached, so training steps only run the two transformers.

A batch is a pure function of (seed, step, process): resuming at step k draws
exactly what an uninterrupted run drew there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hprune.core.errors import HpruneError
from hprune.core.files import default_mode

KEYS = ("x0", "seq", "pooled")


@dataclass
class DistillData:
    x0: torch.Tensor      # (N, C, H, W): images (toy, in [-1, 1]) or VAE latents (real models)
    seq: torch.Tensor     # (N, L, D) sequence text embeddings
    pooled: torch.Tensor  # (N, P) pooled text embeddings

    def __post_init__(self):
        # Contiguous, as a cache file loads: a channels-last x0 (images permuted from NHWC)
        # stays channels-last through indexing and convolves to other float roundings, so
        # a run on fresh data would differ from its resume on the cached data (issue #22).
        self.x0, self.seq, self.pooled = (t.contiguous() for t in (self.x0, self.seq, self.pooled))
        if not (len(self.x0) == len(self.seq) == len(self.pooled)) or len(self.x0) == 0:
            raise HpruneError("distillation data must hold the same, non-zero number of inputs and captions.")

    def __len__(self) -> int:
        return len(self.x0)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            save_file({k: getattr(self, k).contiguous().cpu() for k in KEYS}, str(tmp))
            default_mode(tmp)
            tmp.replace(path)
        except BaseException:  # Ctrl-C or a full disk: no half-written cache is left behind
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "DistillData":
        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            raise HpruneError(f"distillation data {path} does not exist; build it first.") from None
        missing = [k for k in KEYS if k not in tensors]
        if missing:
            raise HpruneError(f"{path} lacks {missing}; it is not an hprune distillation cache.")
        return cls(**{k: tensors[k] for k in KEYS})


def step_generator(seed: int, step: int, process: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003) + step) * 1009 + process)


@dataclass
class Batch:
    x0: torch.Tensor
    seq: torch.Tensor
    pooled: torch.Tensor
    noise: torch.Tensor
    sigma: torch.Tensor

    @property
    def noisy(self) -> torch.Tensor:
        s = self.sigma.view(-1, *[1] * (self.x0.dim() - 1))
        return (1 - s) * self.x0 + s * self.noise


def draw_batch(data: DistillData, batch_size: int, seed: int, step: int, process: int = 0,
               logit_mean: float = 0.0, logit_std: float = 1.0) -> Batch:
    gen = step_generator(seed, step, process)
    idx = torch.randint(len(data), (batch_size,), generator=gen)
    noise = torch.randn(batch_size, *data.x0.shape[1:], generator=gen)
    # logit-normal noise levels, as SD3 trains
    sigma = torch.sigmoid(logit_mean + logit_std * torch.randn(batch_size, generator=gen))
    return Batch(data.x0[idx].float(), data.seq[idx].float(), data.pooled[idx].float(), noise, sigma)
