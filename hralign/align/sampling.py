"""Which pairs and frames a training step sees, as a pure function of (seed, step).

Stateless sampling makes resuming exact (no RNG state to restore) and lets the cached path and
the plain path see exactly the same frames. Frames are drawn TSN-style: the clip is cut into T
equal segments and one position is drawn in each, at the same relative positions for the human
and the robot clip of a pair, so frame-aligned pairs stay aligned. Evaluation takes segment
centres.
"""

from __future__ import annotations

import numpy as np


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def relative_positions(num: int, frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """(num, T) positions in [0, 1): random within T segments, or segment centres when rng is None."""
    base = np.arange(frames, dtype=np.float64)[None, :]
    offset = np.full((num, frames), 0.5) if rng is None else rng.random((num, frames))
    return (base + offset) / frames


def positions_to_indices(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Map relative positions (N, T) to frame indices of clips with the given lengths (N,)."""
    idx = np.floor(positions * lengths[:, None]).astype(np.int64)
    return np.minimum(idx, lengths[:, None] - 1)


def step_batch(train_pairs: np.ndarray, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Pair indices of global step ``step``: epoch-wise shuffles of the training pairs, last partial batch dropped."""
    per_epoch = max(1, len(train_pairs) // batch_size)
    epoch, i = divmod(step, per_epoch)
    order = _rng(seed, 1, epoch).permutation(len(train_pairs))
    return train_pairs[order[i * batch_size:(i + 1) * batch_size]]


def step_positions(batch_len: int, frames: int, seed: int, step: int) -> np.ndarray:
    """Random relative frame positions (batch_len, T) of global step ``step``."""
    return relative_positions(batch_len, frames, _rng(seed, 2, step))
