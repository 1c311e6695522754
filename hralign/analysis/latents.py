"""Latent actions streamed from a pairs file.

For a feature encoder f, the latent action of frame t is z_t = f(x_{t+k}) - f(x_t) (``gap`` k),
the feature-difference proxy used to read latent actions out of frozen video encoders (cf. the
latent actions of LAPA, Ye et al., 2024, learned by an inverse-dynamics model). For a latent
action model (a ``lam:`` encoder exposing ``encode_pair``), the model's own continuous latent
and its code are used instead.

The encoder pass is :func:`hralign.encoders.clips.encode_clips` (frames read clip by clip, encoded
in batches across clip boundaries); this module turns its per-frame features into latent actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.decomposition import PCA

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile

HUMAN, ROBOT = 0, 1
DOMAINS = ("human", "robot")


@dataclass
class LatentSet:
    """Latent actions of one view plus per-latent metadata (all arrays have n rows)."""

    latents: np.ndarray  # (n, d) float32
    domain: np.ndarray  # (n,) int8: 0 human, 1 robot
    clip: np.ndarray  # (n,) int64 clip index within its domain
    pair: np.ndarray  # (n,) int64 pair index, -1 when the clip is in no selected pair
    task: np.ndarray  # (n,) int64
    t: np.ndarray  # (n,) int64 frame of x_t within the clip (x_{t+gap} is the "after" frame)
    gap: int = 1
    actions: np.ndarray | None = None  # (n, A) float32 mean robot action over [t, t+gap); NaN rows for human
    codes: np.ndarray | None = None  # (n, tokens) int64, latent action models only
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def with_latents(self, latents: np.ndarray, codes: np.ndarray | None = None) -> "LatentSet":
        """Same metadata, other latents (e.g. the adapted view)."""
        if latents.shape[0] != len(self):
            raise HRAlignError(f"latents have {latents.shape[0]} rows, metadata {len(self)}")
        return LatentSet(latents, self.domain, self.clip, self.pair, self.task, self.t, self.gap, self.actions, codes,
                         dict(self.extra))


def select_clips(pairs: PairsFile, pair_indices: Sequence[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per domain: (clip ids, their pair index) for the selected pairs, in pair order.

    A clip used by several pairs is analysed once, under its first pair.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for d_i, d in enumerate(DOMAINS):
        if d not in pairs.domains:
            continue
        clips: dict[int, int] = {}
        for p in pair_indices:
            c = int(pairs.pairs[int(p), d_i])
            clips.setdefault(c, int(p))
        if not len(pair_indices) and pairs.num_pairs == 0:
            # a file with clips but no pairs: every clip, unpaired
            clips = {c: -1 for c in range(pairs.num_clips(d))}
        out[d] = (np.asarray(list(clips.keys()), np.int64), np.asarray(list(clips.values()), np.int64))
    return out


def feature_differences(features: list[np.ndarray], gap: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """z_t = f_{t+gap} - f_t per clip; returns (latents per clip, t indices per clip)."""
    zs, ts = [], []
    for f in features:
        n = max(0, f.shape[0] - gap)
        zs.append(f[gap:gap + n] - f[:n])
        ts.append(np.arange(n, dtype=np.int64))
    return zs, ts


def _clip_actions(pairs: PairsFile, domain: str, clip: int, ts: np.ndarray, gap: int) -> np.ndarray:
    a = pairs.read_clip(domain, clip, name="actions").astype(np.float32)  # (L, A)
    c = np.concatenate([np.zeros((1, a.shape[1]), np.float64), np.cumsum(a, axis=0, dtype=np.float64)])
    return ((c[ts + gap] - c[ts]) / gap).astype(np.float32)  # mean action over [t, t+gap)


def build_latent_set(pairs: PairsFile, selection: dict[str, tuple[np.ndarray, np.ndarray]],
                     latents: dict[str, list[np.ndarray]], times: dict[str, list[np.ndarray]], gap: int,
                     codes: dict[str, list[np.ndarray]] | None = None) -> LatentSet:
    """Flatten per-clip latents of each domain into one :class:`LatentSet` with metadata."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("z", "domain", "clip", "pair", "task", "t", "act", "code")}
    act_dim = next((pairs.read_clip(d, 0, frames=[0], name="actions").shape[1] for d in selection
                    if pairs.has(d, "actions")), None)
    for d_i, d in enumerate(DOMAINS):
        if d not in selection:
            continue
        clip_ids, pair_ids = selection[d]
        tasks = pairs.clip_tasks(d)
        for j, (c, p) in enumerate(zip(clip_ids, pair_ids)):
            z, ts = latents[d][j], times[d][j]
            n = len(ts)
            if n == 0:
                continue
            parts["z"].append(z.astype(np.float32))
            parts["domain"].append(np.full(n, d_i, np.int8))
            parts["clip"].append(np.full(n, c, np.int64))
            parts["pair"].append(np.full(n, p, np.int64))
            parts["task"].append(np.full(n, tasks[c], np.int64))
            parts["t"].append(ts)
            if act_dim is not None:
                parts["act"].append(_clip_actions(pairs, d, int(c), ts, gap) if pairs.has(d, "actions")
                                    else np.full((n, act_dim), np.nan, np.float32))
            if codes is not None:
                parts["code"].append(codes[d][j])
    if not parts["z"]:
        raise HRAlignError(f"{pairs.path}: no latent actions: every selected clip is shorter than gap+1 = {gap + 1} frames")
    return LatentSet(
        latents=np.concatenate(parts["z"]), domain=np.concatenate(parts["domain"]),
        clip=np.concatenate(parts["clip"]), pair=np.concatenate(parts["pair"]), task=np.concatenate(parts["task"]),
        t=np.concatenate(parts["t"]), gap=gap,
        actions=np.concatenate(parts["act"]) if parts["act"] else None,
        codes=np.concatenate(parts["code"]) if parts["code"] else None,
    )


class LatentWhitener:
    """Optional PCA whitening of latent actions (sklearn ``PCA(whiten=True)``), estimator-style.

    Feature differences of a frozen encoder are dominated by a few high-variance directions
    (lighting, embodiment); whitening gives every direction equal weight before k-means.
    """

    def __init__(self, n_components: int | None = None, seed: int = 0) -> None:
        """``n_components``: kept components (None: those explaining 99% of the variance)."""
        self.n_components = n_components
        self.seed = seed

    def fit(self, X: np.ndarray, y=None) -> "LatentWhitener":
        n, d = X.shape
        # default: the components that explain 99% of the variance (whitening near-zero
        # directions would only amplify noise)
        k = 0.99 if self.n_components is None else min(int(self.n_components), n, d)
        self.pca_ = PCA(n_components=k, whiten=True, svd_solver="full", random_state=self.seed).fit(X)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.pca_.transform(X).astype(np.float32)

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        return self.fit(X).transform(X)
