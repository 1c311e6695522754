"""Train/validation splits of a pairs file: by pair (stratified by task) or by task (held-out tasks).

The file's ``/split`` wins when present: a dataset author who fixed a split (as RH20T or a
benchmark does) should get the same split in every run and every tool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from hralign.config_checks import check_choice, check_fraction, check_int
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.reader import PairsFile

SPLIT_BY = ("pair", "task")
# The one default validation share: training (adapt, pretrain, LAM, policy), `analyze --split val`,
# `lam eval`, datasets and `pairs split` all hold out the same pairs of a file without /split.
DEFAULT_VAL_FRACTION = 0.2


@dataclass
class SplitConfig:
    """How :func:`make_split` holds pairs out when a file has no ``/split`` (``hralign pairs split``)."""

    val_fraction: float = field(default=DEFAULT_VAL_FRACTION, metadata={
        "help": "Validation fraction, in [0, 1): of the pairs of every task (--by pair) or of the tasks (--by task)."})
    by: str = field(default="pair", metadata={"help": "pair: validation pairs in every task; task: whole held-out tasks."})
    seed: int = field(default=0, metadata={"help": "Seed of the random split."})

    def __post_init__(self) -> None:
        _check_args(self.val_fraction, self.by, self.seed)


def pair_tasks(pairs: PairsFile) -> np.ndarray:
    """Task index of every pair (the task of its human clip), int64 [P]."""
    if pairs.num_pairs == 0:
        return np.zeros(0, dtype=np.int64)
    return pairs.clip_tasks("human")[pairs.pairs[:, 0]]


def make_split(tasks: np.ndarray, val_fraction: float = DEFAULT_VAL_FRACTION, by: str = "pair", seed: int = 0) -> np.ndarray:
    """0/1 per pair (1 = validation) computed from the task of each pair.

    ``by="pair"``: within every task, ``round(val_fraction * n)`` pairs (at least one when the task
    has two or more pairs and ``val_fraction > 0``) go to validation, so every task is seen in both.
    ``by="task"``: ``round(val_fraction * K)`` whole tasks (at least one, never all) go to
    validation, for generalisation to unseen tasks.
    """
    _check_args(val_fraction, by, seed)
    tasks = np.asarray(tasks, dtype=np.int64)
    split = np.zeros(len(tasks), dtype=np.uint8)
    if val_fraction == 0 or len(tasks) == 0:
        return split
    rng = np.random.default_rng([seed, 0x5eed])
    if by == "pair":
        for k in np.unique(tasks):
            idx = np.flatnonzero(tasks == k)
            if len(idx) < 2:
                continue
            n_val = min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
            split[rng.choice(idx, size=n_val, replace=False)] = S.SPLIT_VAL
        return split
    uniq = np.unique(tasks)
    if len(uniq) < 2:
        raise HRAlignError(f"split by task needs at least 2 tasks with pairs but found {len(uniq)}; use --by pair")
    n_val = min(len(uniq) - 1, max(1, int(round(val_fraction * len(uniq)))))
    val_tasks = rng.choice(uniq, size=n_val, replace=False)
    split[np.isin(tasks, val_tasks)] = S.SPLIT_VAL
    return split


def split_pairs(pairs_file: PairsFile | str | os.PathLike, val_fraction: float = DEFAULT_VAL_FRACTION, by: str = "pair",
                seed: int = 0, use_file_split: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(train pair indices, validation pair indices), both sorted int64.

    The file's ``/split`` wins when present (``use_file_split=False`` ignores it); otherwise the
    split is made by :func:`make_split` with ``val_fraction``, ``by`` and ``seed``.
    """
    _check_args(val_fraction, by, seed)
    pf = pairs_file if isinstance(pairs_file, PairsFile) else PairsFile(pairs_file)
    stored = pf.split if use_file_split else None
    if stored is not None:
        if stored.shape != (pf.num_pairs,) or not np.isin(stored, (S.SPLIT_TRAIN, S.SPLIT_VAL)).all():
            raise HRAlignError(f"{pf.path}: /split should be uint8 [{pf.num_pairs}] of 0/1 but has shape "
                               f"{list(stored.shape)} and values {sorted(set(np.unique(stored).tolist()))[:5]}")
        split = stored
    else:
        split = make_split(pair_tasks(pf), val_fraction, by, seed)
    return np.flatnonzero(split == S.SPLIT_TRAIN).astype(np.int64), np.flatnonzero(split == S.SPLIT_VAL).astype(np.int64)


def _check_args(val_fraction: float, by: str, seed: int) -> None:
    check_fraction(val_fraction)
    check_choice(by, "by", SPLIT_BY)
    check_int(seed, "seed", 0)
