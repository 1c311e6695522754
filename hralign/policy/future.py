"""Future-feature auxiliary: GR-1's [OBS] prediction at hralign's scale (Wu et al., 2024).

GR-1 pretrains its GPT policy to predict future frames ([OBS] tokens) beside the actions ([ACT]);
the future prediction shapes the hidden state the action is read from. hralign's policies read
cached frozen encoder features, so the auxiliary predicts the *features* of frame ``t + delta``
(not pixels) from the policy trunk's hidden state, with a small linear head. Targets are
standardised with the training features' per-dim mean/std (buffers fitted once, saved with the
policy) so the loss scale does not depend on the encoder; ``cosine`` uses 1 - cos instead.

Rows whose ``t + delta`` falls past the clip end carry ``future_valid = 0`` and add no loss.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FUTURE_LOSSES = ("mse", "cosine")


def future_columns(clip_features: torch.Tensor, t: np.ndarray, delta: int) -> dict[str, torch.Tensor]:
    """``future`` [N, D] = features of frame t+delta (clamped to the last frame) and ``future_valid`` [N]."""
    t = torch.as_tensor(np.asarray(t, dtype=np.int64))
    last = int(clip_features.shape[0]) - 1
    idx = (t + int(delta)).clamp_max(last)
    return {"future": clip_features[idx].float(), "future_valid": ((t + int(delta)) <= last).float()}


class FutureHead(nn.Module):
    """Hidden state [B, H] -> predicted (standardised) features of frame t+delta [B, D]."""

    def __init__(self, hidden_dim: int, feature_dim: int, loss: str = "mse") -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, feature_dim)
        self.loss_name = loss
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> FutureHead:
        """Per-dim mean/std of the training features (std floored: frozen features have dead dims)."""
        f = features.float()
        self.mean.copy_(f.mean(0))
        self.std.copy_(f.std(0, unbiased=False).clamp_min(1e-4 * float(f.std()) + 1e-8))
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)

    def loss(self, h: torch.Tensor, future: torch.Tensor, valid: torch.Tensor,
             mean: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Masked mean over rows of MSE (per standardised dim) or 1 - cosine; 0 when no row is valid.

        ``mean(sum, count)`` replaces ``sum / count`` when given: the training layer's mean over the
        valid rows of the *global* batch under several processes (``hralign.train.distributed.global_mean``),
        as each process's share has its own number of valid rows.
        """
        pred = self(h)
        target = (future.float() - self.mean) / self.std
        if self.loss_name == "cosine":
            per = 1.0 - F.cosine_similarity(pred, target, dim=1)
        else:
            per = (pred - target).pow(2).mean(1)
        valid = valid.float()
        if mean is not None:
            return mean((per * valid).sum(), valid.sum())
        return (per * valid).sum() / valid.sum().clamp_min(1.0)
