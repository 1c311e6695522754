"""A torch ``Dataset`` over pairs: T frames of the human clip and T of the robot clip.

Random sampling (training) draws sorted frame positions once per item and applies the SAME
relative positions to both clips, so frame-aligned pairs stay aligned; uniform sampling
(evaluation) takes evenly spaced frames. Randomness is seeded by (seed, epoch, index), so runs
repeat on CPU and DataLoader workers need no shared state; the HDF5 handle reopens per worker
(:class:`~hralign.pairs.reader.PairsFile`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.reader import PairsFile
from hralign.pairs.split import DEFAULT_VAL_FRACTION, SPLIT_BY, split_pairs

SPLITS = ("train", "val", "all")
SAMPLINGS = ("random", "uniform")


def sample_positions(lengths: tuple[int, ...], frames: int, sampling: str, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Frame indices (int64 [frames], sorted) for clips of the given lengths, one array per clip.

    ``random``: ``frames`` sorted positions on the shortest clip (distinct when it is long enough,
    else with repeats), mapped to each clip at the same relative time. ``uniform``: evenly spaced
    over each clip, ends included. Equal lengths give identical indices for every clip.
    """
    if not lengths or min(lengths) < 1:
        raise HRAlignError(f"clip lengths should all be >= 1 but got {list(lengths)}")
    if sampling not in SAMPLINGS:
        raise HRAlignError(f"`sampling` should be one of {SAMPLINGS} but the value passed is {sampling!r}")
    base = min(lengths)
    if sampling == "uniform":
        return [np.rint(np.linspace(0, n - 1, frames)).astype(np.int64) for n in lengths]
    if rng is None:
        raise HRAlignError("random sampling needs a numpy Generator `rng` (seeded by seed, epoch, index)")
    if base >= frames:
        k = np.sort(rng.choice(base, size=frames, replace=False))
    else:
        k = np.sort(rng.integers(0, base, size=frames))
    return [np.minimum(((k + 0.5) * n / base).astype(np.int64), n - 1) for n in lengths]


class PairsDataset(Dataset):
    """Paired clips of a pairs file for training and evaluation.

    Parameters
    ----------
    pairs : str, Path or PairsFile
        The pairs file.
    frames : int
        T, the frames sampled from each clip.
    split : {"train", "val", "all"}
        Which pairs; the file's ``/split`` wins, else one is made with ``val_fraction`` and ``split_by``.
    sampling : {"random", "uniform"}
        Sorted random positions shared by both clips (training) or evenly spaced (evaluation).
    seed : int
        Seeds random sampling together with the epoch (:meth:`set_epoch`) and the item index.
    val_fraction : float
        Validation share when the file has no ``/split``.
    split_by : {"pair", "task"}
        Validation pairs stratified within each task, or whole held-out tasks.

    Items are dicts: ``human`` uint8 [T, H, W, 3], ``robot`` uint8 [T, H', W', 3],
    ``human_frames``/``robot_frames`` int64 [T] (indices within the clip), ``task`` int,
    ``instruction`` str, ``pair``, ``human_clip``, ``robot_clip`` ints, and ``robot_actions``
    float32 [T, A] / ``robot_state`` float32 [T, S] (likewise ``human_*``) when the file has them.
    """

    def __init__(self, pairs: PairsFile | str | os.PathLike, frames: int = 5, split: str = "train",
                 sampling: str = "random", seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION, split_by: str = "pair") -> None:
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise HRAlignError(f"`frames` should be a positive integer but the value passed is {frames!r}")
        if split not in SPLITS:
            raise HRAlignError(f"`split` should be one of {SPLITS} but the value passed is {split!r}")
        if sampling not in SAMPLINGS:
            raise HRAlignError(f"`sampling` should be one of {SAMPLINGS} but the value passed is {sampling!r}")
        if split_by not in SPLIT_BY:
            raise HRAlignError(f"`split_by` should be one of {SPLIT_BY} but the value passed is {split_by!r}")
        self.pairs = pairs if isinstance(pairs, PairsFile) else PairsFile(pairs)
        pf = self.pairs
        for d in S.DOMAINS:
            if pf.num_clips(d) == 0:
                raise HRAlignError(f"{pf.path}: has no {d} clips; a pairs dataset needs both domains")
        if pf.num_pairs == 0:
            raise HRAlignError(f"{pf.path}: /pairs is empty; nothing to sample")
        self.frames = int(frames)
        self.split = split
        self.sampling = sampling
        self.seed = int(seed)
        self.epoch = 0
        train, val = split_pairs(pf, val_fraction=val_fraction, by=split_by, seed=seed)
        self.indices: np.ndarray = {"train": train, "val": val, "all": np.arange(pf.num_pairs, dtype=np.int64)}[split]
        if len(self.indices) == 0:
            raise HRAlignError(f"{pf.path}: the {split!r} split has no pairs (val_fraction={val_fraction}, "
                               f"split_by={split_by!r}, stored /split: {pf.split is not None})")
        self._optional = [(d, n) for d in S.DOMAINS for n in S.PER_FRAME_OPTIONAL if pf.has(d, n)]

    def set_epoch(self, epoch: int) -> None:
        """Reseed random sampling for a new epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    @property
    def tasks(self) -> list[str]:
        return self.pairs.tasks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index = int(index) % len(self)
        pf = self.pairs
        pair = int(self.indices[index])
        hc, rc = (int(x) for x in pf.pairs[pair])
        lengths = (int(pf.clip_lengths("human")[hc]), int(pf.clip_lengths("robot")[rc]))
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.sampling == "random" else None
        h_idx, r_idx = sample_positions(lengths, self.frames, self.sampling, rng)
        task = int(pf.clip_tasks("human")[hc])
        item = {
            "human": torch.from_numpy(pf.read_clip("human", hc, h_idx)),
            "robot": torch.from_numpy(pf.read_clip("robot", rc, r_idx)),
            "human_frames": torch.from_numpy(h_idx),
            "robot_frames": torch.from_numpy(r_idx),
            "task": task,
            "instruction": pf.instruction(task) if 0 <= task < pf.num_tasks else "",
            "pair": pair,
            "human_clip": hc,
            "robot_clip": rc,
        }
        for d, name in self._optional:
            clip, idx = (hc, h_idx) if d == "human" else (rc, r_idx)
            item[f"{d}_{name}"] = torch.from_numpy(np.ascontiguousarray(pf.read_clip(d, clip, idx, name=name), dtype=np.float32))
        return item

    def __repr__(self) -> str:
        return (f"PairsDataset({str(self.pairs.path)!r}, split={self.split!r}, pairs={len(self)}, frames={self.frames}, "
                f"sampling={self.sampling!r})")
