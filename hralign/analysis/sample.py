"""Stratified samples of latents (by embodiment and task) for the steps that cannot use every point.

At a million latents, k-means training, the UMAP fit, kNN queries and the scatter work on a
sample; a uniform sample would starve rare tasks and the smaller embodiment, so every
(embodiment, task) group gets its proportional share (largest remainders), at least one point
while the budget allows, drawn with a seeded generator. Same inputs + seed -> same sample.
"""

from __future__ import annotations

import numpy as np

from hralign.errors import HRAlignError


def stratified_sample(domain: np.ndarray, task: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(size, n)`` rows, proportionally allocated over (domain, task) groups.

    Parameters
    ----------
    domain, task : ndarray of shape (n,)  group labels (0 human / 1 robot; task ids)
    size : int  how many rows to keep (>= 1); ``size >= n`` returns every row
    seed : int  seed of the draw inside each group
    """
    domain, task = np.asarray(domain), np.asarray(task)
    n = domain.shape[0]
    if task.shape != (n,):
        raise HRAlignError(f"`task` should have shape ({n},) like `domain` but has {task.shape}")
    if isinstance(size, bool) or int(size) < 1:
        raise HRAlignError(f"`size` should be a positive integer but the value passed is {size!r}")
    if size >= n:
        return np.arange(n, dtype=np.int64)
    key = domain.astype(np.int64) * (int(task.max()) + 1 if n else 1) + task.astype(np.int64)
    groups, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    quota = counts * (size / n)
    take = np.floor(quota).astype(np.int64)
    if size >= len(groups):  # every group at least one point when the budget allows
        take = np.maximum(take, 1)
    # hand out what is left by largest remainder (ties: larger group first, then group order)
    left = size - int(take.sum())
    if left > 0:
        order = np.lexsort((-counts, -(quota - np.floor(quota))))
        order = [g for g in order if take[g] < counts[g]]
        for g in order[:left]:
            take[g] += 1
    elif left < 0:  # the minimum of one per group overshot: trim the largest groups
        for g in np.argsort(-take, kind="stable")[: -left]:
            take[g] -= 1
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")  # rows grouped, ascending within each group
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = [rng.choice(order[starts[g]:starts[g + 1]], size=int(take[g]), replace=False) for g in range(len(groups))
           if take[g] > 0]
    return np.sort(np.concatenate(out)).astype(np.int64)
