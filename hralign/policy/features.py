"""Frozen-encoder features of whole clips, computed once per run and kept in memory.

The encoder (and its adapter) never trains in a policy run, so every frame is encoded once and
the policy trains on cached features: thousands of MLP steps take seconds on 2 CPU cores
(R3M's evaluation trains its BC policy on frozen embeddings the same way).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from hralign.device import Placement
from hralign.encoders.clips import encode_clips
from hralign.pairs import PairsFile


def features_by_clip(encoder: nn.Module, pairs: PairsFile, domain: str, clips: Iterable[int], batch_size: int = 64,
                     progress: bool = False, placement: Placement | None = None) -> dict[int, torch.Tensor]:
    """``{clip: float32 [T, D]}`` for each distinct clip of ``domain``: a dict keyed by clip id, where
    :func:`hralign.encoders.clips.encode_clips` (the encoder pass it calls; ``placement`` gives its
    device and precision) returns a list in the order of the clips asked for."""
    clips = sorted({int(c) for c in clips})
    encoder.eval()
    feats = encode_clips(encoder, pairs, domain, clips, batch_size=batch_size, placement=placement,
                         progress=progress, desc=f"features {domain}")
    return dict(zip(clips, feats))


def context_features(clip_features: torch.Tensor, t: np.ndarray, k: int) -> torch.Tensor:
    """Features of frames t-k+1..t (clamped at 0) concatenated oldest first: [len(t), k*D]."""
    t = torch.as_tensor(np.asarray(t, dtype=np.int64))
    idx = (t[:, None] - torch.arange(k - 1, -1, -1)[None, :]).clamp_min(0)  # (N, k)
    return clip_features[idx].reshape(len(t), -1)
