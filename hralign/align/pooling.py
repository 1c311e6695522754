"""Pooling of T per-frame features into one clip feature (HR-Align samples 5 frames per video).

``mean`` is plain averaging. ``attention`` follows HR-Align's language-query pooling: the task
instruction goes through a frozen sentence encoder and a trainable linear layer to give a query;
frames are weighted by softmax(q . f_t / sqrt(D)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from hralign.errors import HRAlignError

POOLING_METHODS = ("mean", "attention")


@dataclass
class PoolingConfig:
    method: str = field(default="mean", metadata={"help": "How T frame features become one: mean | attention (instruction query)."})
    text_dim: int = field(default=0, metadata={"help": "Instruction embedding size (attention only)."})
    feature_dim: int = field(default=0, metadata={"help": "Frame feature size D."})

    def __post_init__(self) -> None:
        if self.method not in POOLING_METHODS:
            raise HRAlignError(f"`pooling` should be one of {POOLING_METHODS} but the value passed is {self.method!r}")
        if self.method == "attention" and (self.text_dim <= 0 or self.feature_dim <= 0):
            raise HRAlignError("attention pooling needs a text encoder (text_dim > 0) and the feature dim")


class FramePooling(nn.Module):
    """(B, T, D) frame features (+ (B, E) instruction embeddings) -> (B, D)."""

    def __init__(self, config: PoolingConfig) -> None:
        super().__init__()
        self.config = config
        self.query = nn.Linear(config.text_dim, config.feature_dim) if config.method == "attention" else None

    def forward(self, frames: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if self.query is None:
            return frames.mean(dim=1)
        if text is None:
            raise HRAlignError("attention pooling needs the instruction embeddings of the batch")
        q = self.query(text.to(frames.dtype))  # (B, D)
        scores = torch.einsum("btd,bd->bt", frames, q) / math.sqrt(frames.shape[-1])  # (B, T)
        weights = scores.softmax(dim=1)
        return torch.einsum("bt,btd->bd", weights, frames)
