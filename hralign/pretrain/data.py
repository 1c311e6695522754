"""Which clips a pretraining run trains on and which it holds out, and how a batch is drawn.

The held-out set is whole pairs (``hralign.pairs.split.split_pairs``: the file's ``/split`` when
present, else a seeded share of each task's pairs): their human *and* robot clips are the kNN queries and the held-out time-contrastive
clips, so the human and robot figures are measured on the same episodes. Files without pairs
(human video only) hold out a seeded share of clips instead.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs
from hralign.pretrain.sampling import MIN_CLIP_LENGTH, augment_frames

# (clip length, generator) -> the frame positions of one sample (an objective's own draw)
FrameIndices = Callable[[int, torch.Generator], list[int]]

DOMAINS = ("human", "robot")


class PretrainData:
    """Training/held-out clips of a pairs file for `hralign pretrain`, checked on construction.

    Parameters
    ----------
    path : str or Path
        The pairs file (opened read-only).
    domain : {"human", "robot", "both"}
        Clips the encoder is trained on.
    val_fraction : float
        Share of pairs held out when the file has no ``/split``.
    seed : int
        Seed of that split.

    Attributes
    ----------
    train : list of (domain, clip)
        Clips sampled for training.
    heldout : dict domain -> int64 array
        Held-out clips of every domain in the file (both domains are evaluated).
    reference : dict domain -> int64 array
        Every other clip of each domain (kNN references).
    """

    def __init__(self, path: str | os.PathLike, domain: str, val_fraction: float = 0.25, seed: int = 0) -> None:
        self.pairs = PairsFile(path)
        self.path = self.pairs.path
        self.domain = domain
        self.train_domains = DOMAINS if domain == "both" else (domain,)
        for d in self.train_domains:
            n = self.pairs.num_clips(d)
            if n == 0:
                other = [x for x in self.pairs.domains if x != d]
                hint = f"; it has {other[0]} clips (pass --domain {other[0]})" if other else ""
                raise HRAlignError(f"{self.path}: has no {d} clips, but --domain {domain} trains on them{hint}")
            lengths = self.pairs.clip_lengths(d)
            short = np.flatnonzero(lengths < MIN_CLIP_LENGTH)
            if short.size:
                c = int(short[0])
                raise HRAlignError(
                    f"{self.path}: {d} clip {c} has {int(lengths[c])} frames ({short.size} clips shorter than "
                    f"{MIN_CLIP_LENGTH}); training samples and the held-out time-contrastive accuracy need at least {MIN_CLIP_LENGTH} "
                    "frames per clip (s0 < s1 < s2)")
        self.heldout, self.reference = self._split(val_fraction, seed)
        self.train: list[tuple[str, int]] = [(d, int(c)) for d in self.train_domains for c in self.reference[d]]
        if len(self.train) < 2:
            raise HRAlignError(f"{self.path}: only {len(self.train)} {domain} training clip(s) after holding out "
                               f"{sum(len(v) for v in self.heldout.values())}; negatives need at least 2 clips")
        tasks = {d: self.pairs.clip_tasks(d) for d in self.pairs.domains}
        self.instructions: list[str] = list(self.pairs.tasks)
        self._tasks = tasks

    # -------------------------------------------------------------------------------- split
    def _split(self, val_fraction: float, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        pf = self.pairs
        heldout: dict[str, np.ndarray] = {}
        if pf.num_pairs > 0:
            # the file's /split wins; else a per-task stratified split (every task in both halves)
            _, val = split_pairs(pf, val_fraction=val_fraction, by="pair", seed=seed)
            for col, d in enumerate(DOMAINS):
                if pf.num_clips(d):
                    heldout[d] = np.unique(pf.pairs[val, col])
        else:
            rng = np.random.default_rng(seed)
            for d in pf.domains:
                n = pf.num_clips(d)
                n_val = max(1, int(round(val_fraction * n))) if n > 1 else 0
                heldout[d] = np.sort(rng.permutation(n)[:n_val])
        reference = {d: np.setdiff1d(np.arange(pf.num_clips(d)), heldout.get(d, [])) for d in pf.domains}
        for d in pf.domains:
            heldout.setdefault(d, np.zeros(0, np.int64))
        return heldout, reference

    # -------------------------------------------------------------------------------- access
    def clip_task(self, domain: str, clip: int) -> int:
        return int(self._tasks[domain][clip])

    def tasks_of(self, domain: str, clips: np.ndarray) -> np.ndarray:
        return self._tasks[domain][np.asarray(clips, dtype=np.int64)]

    def sample_batch(self, batch_size: int, indices: FrameIndices, image_size: int, generator: torch.Generator,
                     crop_scale: float = 1.0, color_jitter: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: F frames of each of ``batch_size`` clips, augmented alike per clip.

        ``indices(length, generator)`` gives the F frame positions of one clip (each objective has
        its own: R3M's start, goal, s0 < s1 < s2; a pair t, t + k; random frames). Returns float
        frames [B, F, 3, S, S] in [0, 1] and the B task indices (int64). Clips are drawn without
        replacement when the training set is large enough, else with replacement; per clip the
        positions are drawn first, then the crop, then the jitter (:func:`augment_frames`).
        """
        n = len(self.train)
        if batch_size <= n:
            picks = torch.randperm(n, generator=generator)[:batch_size].tolist()
        else:
            picks = torch.randint(0, n, (batch_size,), generator=generator).tolist()
        samples, tasks = [], []
        for p in picks:
            d, clip = self.train[p]
            length = int(self.pairs.clip_lengths(d)[clip])
            idx = indices(length, generator)
            frames = torch.from_numpy(self.pairs.read_clip(d, clip, idx))  # (F, H, W, 3) uint8
            frames = frames.permute(0, 3, 1, 2).float().div_(255.0)
            samples.append(augment_frames(frames, image_size, crop_scale, color_jitter, generator))
            tasks.append(self.clip_task(d, clip))
        return torch.stack(samples), torch.tensor(tasks, dtype=torch.int64)
