"""The shapes world's text encoder: words -> sequence and pooled embeddings.

A word tokenizer over a fixed vocabulary (the world's VOCABULARY, stored in the
config so a checkpoint stays readable if the world grows), a learned word and
position embedding, and a few pre-norm transformer layers. Like SD3's T5 and
CLIP pair it gives the transformer two things: a sequence of token embeddings
(`joint_attention_dim` wide) and one pooled vector (`pooled_projection_dim`),
read from a leading [CLS] token. It is trained jointly with the teacher.

Inputs are always padded to `max_length`, so training and sampling see the same
shapes; padding is masked out of the encoder's attention. An empty prompt is a
lone [CLS]: the unconditional input of classifier-free guidance.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from hprune.core.errors import HpruneError

PAD, CLS = "<pad>", "<cls>"
_WORD = re.compile(r"[a-z0-9]+")


def split_words(prompt: str) -> list[str]:
    """Lower-cased words of a prompt; punctuation separates words."""
    return _WORD.findall(prompt.lower())


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention + GELU MLP, with a key padding mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :]  # (B, 1, 1, N): True where a key is a real token
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(attn.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x))


class ShapesTextEncoder(ModelMixin, ConfigMixin):
    """Word-level transformer text encoder for the shapes world."""

    @register_to_config
    def __init__(
        self,
        vocabulary: tuple[str, ...] | list[str] = (),
        max_length: int = 32,
        width: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        joint_attention_dim: int = 128,
        pooled_projection_dim: int = 128,
    ):
        super().__init__()
        if not vocabulary:
            raise HpruneError("ShapesTextEncoder needs a vocabulary; pass hprune.toy.prompts.VOCABULARY.")
        if width % num_heads:
            raise HpruneError(f"text encoder width {width} must be divisible by num_heads {num_heads}.")
        self.index = {word: i for i, word in enumerate((PAD, CLS, *vocabulary))}
        self.embed = nn.Embedding(len(self.index), width)
        self.position = nn.Parameter(torch.randn(max_length, width) * 0.02)
        self.layers = nn.ModuleList(_EncoderLayer(width, num_heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(width)
        self.to_sequence = nn.Linear(width, joint_attention_dim)
        self.to_pooled = nn.Linear(width, pooled_projection_dim)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids (B, max_length): [CLS], the prompt's words, padding."""
        rows = [self._ids(prompt) for prompt in prompts]
        ids = torch.full((len(rows), self.config.max_length), self.index[PAD], dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids

    def _ids(self, prompt: str) -> list[int]:
        words = split_words(prompt)
        unknown = [w for w in words if w not in self.index or w in (PAD, CLS)]
        if unknown:
            raise HpruneError(
                f"unknown word {unknown[0]!r} in prompt {prompt!r}; "
                "the shapes text encoder only knows the words of hprune.toy.prompts.VOCABULARY."
            )
        if len(words) + 1 > self.config.max_length:
            raise HpruneError(
                f"prompt {prompt!r} has {len(words)} words; the text encoder takes at most {self.config.max_length - 1}."
            )
        return [self.index[CLS]] + [self.index[w] for w in words]

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence (B, L, joint_attention_dim), pooled (B, pooled_projection_dim))."""
        keep = input_ids != self.index[PAD]
        x = self.embed(input_ids) + self.position[: input_ids.shape[1]]
        for layer in self.layers:
            x = layer(x, keep)
        x = self.norm(x)
        return self.to_sequence(x), self.to_pooled(x[:, 0])

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize on the encoder's device and run it."""
        return self(self.tokenize(prompts).to(self.device))
