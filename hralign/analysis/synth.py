"""Synthetic latents.h5 files with known structure, written chunk by chunk (benchmarks and tests).

Rows come in clips of ``clip_len`` latents; human clip i and robot clip i form pair i and share
their task (``clip % num_tasks``) and, frame by frame, their latent-action cluster (each task walks
through its own sequence of clusters), so cross-embodiment metrics have a known answer. A latent
is its cluster's centre, plus a per-embodiment offset (``embodiment_shift`` noise std), plus
isotropic noise. Every chunk has its own seeded generator: same arguments -> same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from hralign.analysis.latents import LatentSet
from hralign.analysis.rows import CHUNK_ROWS
from hralign.analysis.store import META, LatentsWriter
from hralign.atomic import atomic_path
from hralign.errors import HRAlignError


def synthetic_meta(n: int, num_tasks: int = 8, clip_len: int = 50, embodiments: int = 2) -> dict[str, np.ndarray]:
    """Per-row metadata of :func:`write_synthetic_latents` (human rows first, then robot rows)."""
    per = [n - n // 2, n // 2] if embodiments == 2 else [n, 0]
    parts = {k: [] for k in META}
    for d, m in enumerate(per):
        r = np.arange(m, dtype=np.int64)
        clip = r // clip_len
        parts["domain"].append(np.full(m, d, np.int8))
        parts["clip"].append(clip)
        parts["pair"].append(clip if embodiments == 2 else np.full(m, -1, np.int64))
        parts["task"].append(clip % num_tasks)
        parts["t"].append(r % clip_len)
    return {k: np.concatenate(v) for k, v in parts.items()}


def write_synthetic_latents(path: str | os.PathLike, n: int, dim: int = 512, num_clusters: int = 64,
                            num_tasks: int = 8, embodiments: int = 2, clip_len: int = 50, noise: float = 0.25,
                            embodiment_shift: float = 0.1, seed: int = 0) -> Path:
    """Write an ``n``-row latents.h5 (one view, "frozen") in chunks; returns ``path``."""
    if embodiments not in (1, 2):
        raise HRAlignError(f"`embodiments` should be 1 or 2 but the value passed is {embodiments!r}")
    if n < 1 or dim < 1 or num_clusters < 1 or num_tasks < 1:
        raise HRAlignError(f"n, dim, num_clusters, num_tasks should be positive; got {n}, {dim}, {num_clusters}, {num_tasks}")
    meta = synthetic_meta(n, num_tasks, clip_len, embodiments)
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(num_clusters, dim)) * 0.53).astype(np.float32)  # ~3 noise std apart at 0.25
    shift = (rng.normal(size=(2, dim)) * embodiment_shift).astype(np.float32)
    # each task walks through its own sequence of clusters: segment s of a clip -> cluster
    walk = rng.integers(0, num_clusters, size=(num_tasks, 5))
    seg = np.minimum(meta["t"] * 5 // clip_len, 4)
    cluster = walk[meta["task"], seg]
    ls = LatentSet(latents=np.zeros((n, 0), np.float32), **meta, gap=1)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h:
            w = LatentsWriter(h, n, [f"task {i}" for i in range(num_tasks)], gap=1,
                              attrs={"synthetic": {"n": n, "dim": dim, "clusters": num_clusters, "seed": seed}})
            w.meta(ls)
            ds = w.dataset("views/frozen/latents", (n, dim), np.float32)
            for a in range(0, n, CHUNK_ROWS):
                b = min(n, a + CHUNK_ROWS)
                g = np.random.default_rng([seed, a])
                x = centres[cluster[a:b]] + shift[meta["domain"][a:b]]
                ds[a:b] = x + g.standard_normal((b - a, dim), dtype=np.float32) * noise
            h["views/frozen"].attrs["map_method"] = ""
            h.create_dataset("synthetic_clusters", data=cluster)
    return Path(path)
