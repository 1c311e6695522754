"""A little action supervision for a LAM (LAOM, Nikulin et al. 2025, "Latent Action Learning Requires
Supervision in the Presence of Distractors").

LAOM found that latents learned from video alone follow whatever changes most in the frame, and
that a linear head from latent to true action trained on a small share of labelled frames (2.5%)
multiplies the action probe several times. :class:`ActionSupervision` holds that share: a seeded
``fraction`` of the robot frame pairs of a pairs file with ``/robot/actions`` (their frames read
once), the actions over the gap (summed, standardised per column, as the probe's targets), and the
linear head. Its :meth:`loss` runs the LAM's IDM on a batch of them and returns the head's MSE,
which the trainer adds with ``--action-weight`` so the gradient shapes the IDM.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hralign.errors import HRAlignError
from hralign.lam.data import FramePairs, check_frame_size
from hralign.lam.evaluate import gap_targets
from hralign.pairs import PairsFile


class ActionSupervision(nn.Module):
    """Labelled robot frame pairs + a linear head latent -> action (see module docstring).

    Parameters
    ----------
    pairs_path : str
        Pairs file with robot clips and ``/robot/actions``.
    fraction : float
        Share of its robot frame pairs that are labelled, in (0, 1]; at least 2 pairs.
    gap, image_size, latent_dim : int
        Of the LAM being trained (frames must already be ``image_size``).
    seed : int
        Chooses the labelled pairs.
    """

    def __init__(self, pairs_path: str, fraction: float, gap: int, image_size: int, latent_dim: int,
                 seed: int = 0) -> None:
        super().__init__()
        pairs = PairsFile(pairs_path)
        if "robot" not in pairs.domains or not pairs.has("robot", "actions"):
            raise HRAlignError(f"--action-pairs {pairs_path}: needs robot clips with /robot/actions "
                               f"(it has domains {list(pairs.domains)})")
        check_frame_size(pairs, ("robot",), image_size)
        data = FramePairs(pairs, ("robot",), gap, preload_bytes=0)
        n = max(2, int(round(fraction * len(data))))
        if n > len(data):
            raise HRAlignError(f"--action-pairs {pairs_path}: has {len(data)} robot frame pairs at gap {gap}; "
                               "the action head needs at least 2")
        rows = np.sort(np.random.default_rng([seed, 11]).permutation(len(data))[:n])
        y = gap_targets(pairs, "robot", data.index.clip[rows], data.index.t[rows], gap)
        mean, std = y.mean(0), y.std(0)
        std[std < 1e-9] = 1.0
        self.frames = data.get(rows)  # uint8 (n, 2, S, S, 3)
        self.targets = torch.from_numpy(((y - mean) / std).astype(np.float32))
        self.clips = int(len(np.unique(data.index.clip[rows])))
        self.total = len(data)
        self.head = nn.Linear(latent_dim, y.shape[1])
        pairs.close()

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batch(self, size: int, seed: int, step: int) -> tuple[np.ndarray, torch.Tensor]:
        """(frames uint8 (B, 2, S, S, 3), standardised targets (B, A)) of labelled pairs drawn from (seed, step)."""
        idx = np.random.default_rng([seed, step, 13]).integers(0, len(self), size)
        return self.frames[idx], self.targets[idx]

    def loss(self, model, frames: np.ndarray, targets: torch.Tensor) -> torch.Tensor:
        """MSE of the head on the IDM's continuous latents of ``frames`` (gradient reaches the IDM)."""
        z = model.encode(model.preprocess(frames)).flatten(1)
        return F.mse_loss(self.head(z), targets.to(z.device))
