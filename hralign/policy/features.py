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

from hralign.pairs import PairsFile


@torch.no_grad()
def encode_clips(encoder: nn.Module, pairs: PairsFile, domain: str, clips: Iterable[int], batch_size: int = 64,
                 progress: bool = False) -> dict[int, torch.Tensor]:
    """``{clip: float32 [T, D]}`` for each clip of ``domain`` (frames read by slice, encoded in batches)."""
    clips = sorted({int(c) for c in clips})
    out: dict[int, torch.Tensor] = {}
    bar = None
    if progress and clips:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(pairs.clip_lengths(domain)[clips].sum()), desc=f"features {domain}", unit="frame",
                   dynamic_ncols=True, leave=False)
    encoder.eval()
    for c in clips:
        frames = pairs.read_clip(domain, c)  # uint8 (T, H, W, 3)
        parts = []
        for i in range(0, len(frames), batch_size):
            parts.append(encoder(frames[i:i + batch_size]).float().cpu())
            if bar is not None:
                bar.update(min(batch_size, len(frames) - i))
        out[c] = torch.cat(parts) if parts else torch.zeros(0, 0)
    if bar is not None:
        bar.close()
    return out


def context_features(clip_features: torch.Tensor, t: np.ndarray, k: int) -> torch.Tensor:
    """Features of frames t-k+1..t (clamped at 0) concatenated oldest first: [len(t), k*D]."""
    t = torch.as_tensor(np.asarray(t, dtype=np.int64))
    idx = (t[:, None] - torch.arange(k - 1, -1, -1)[None, :]).clamp_min(0)  # (N, k)
    return clip_features[idx].reshape(len(t), -1)
