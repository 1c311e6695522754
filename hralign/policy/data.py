"""Per-frame training tables built from a pairs file + cached features (+ LAM labels).

A table is a dict of tensors with one row per frame: ``features`` [N, k*D], ``task`` [N],
``clip`` [N], ``t`` [N], and ``action`` [N, A] / ``state`` [N, S] (robot clips) or ``tokens``
[N, K] (latent labels). :func:`batch_of` picks rows and adds the instruction embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs
from hralign.policy.features import context_features
from hralign.policy.future import future_columns


def clip_split(pairs: PairsFile, val_fraction: float, by: str, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train clips, held-out clips) per domain from :func:`hralign.pairs.split.split_pairs`.

    Held-out clips are those of validation pairs; every other clip (unpaired ones included) trains.
    """
    train_idx, val_idx = split_pairs(pairs, val_fraction=val_fraction, by=by, seed=seed)
    train, held = {}, {}
    for j, d in enumerate(("human", "robot")):
        if d not in pairs.domains:
            continue
        held[d] = np.unique(pairs.pairs[val_idx, j]) if len(val_idx) else np.zeros(0, np.int64)
        train[d] = np.setdiff1d(np.arange(pairs.num_clips(d)), held[d])
    return train, held


def pick_fraction(clips: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded subset of ``round(fraction * n)`` clips (at least one), sorted."""
    n = max(1, int(round(fraction * len(clips))))
    rng = np.random.default_rng([seed, 0xAC7])
    return np.sort(rng.choice(np.asarray(clips), size=min(n, len(clips)), replace=False))


def check_robot_actions(pairs: PairsFile, head: str) -> None:
    """The action stage needs /robot/actions; say so in one line when it is missing."""
    if "robot" not in pairs.domains:
        raise HRAlignError(f"{pairs.path}: has no robot clips; --head {head} trains on robot clips with /robot/actions")
    if not pairs.has("robot", "actions"):
        raise HRAlignError(f"{pairs.path}: /robot/actions does not exist; --head {head} needs per-frame robot actions "
                           "(float32 [N_r, A]; PairsWriter.add_clip(..., actions=...))")


def action_table(pairs: PairsFile, feats: dict[int, torch.Tensor], clips: np.ndarray, k: int,
                 proprio: bool, future: int = 0) -> dict[str, torch.Tensor]:
    """One row per frame of each robot clip in ``clips``: features, action, optional state
    (and ``future``/``future_valid``, the features of frame t+future, when ``future`` > 0)."""
    use_state = proprio and pairs.has("robot", "state")
    cols: dict[str, list] = {"features": [], "action": [], "task": [], "clip": [], "t": []}
    if use_state:
        cols["state"] = []
    if future:
        cols["future"], cols["future_valid"] = [], []
    tasks = pairs.clip_tasks("robot")
    for c in np.asarray(clips, dtype=np.int64):
        f = feats[int(c)]
        t = np.arange(len(f))
        cols["features"].append(context_features(f, t, k))
        if future:
            for key, v in future_columns(f, t, future).items():
                cols[key].append(v)
        cols["action"].append(torch.from_numpy(np.asarray(pairs.read_clip("robot", int(c), name="actions"), np.float32)))
        if use_state:
            cols["state"].append(torch.from_numpy(np.asarray(pairs.read_clip("robot", int(c), name="state"), np.float32)))
        cols["task"].append(torch.full((len(t),), int(tasks[c]), dtype=torch.long))
        cols["clip"].append(torch.full((len(t),), int(c), dtype=torch.long))
        cols["t"].append(torch.from_numpy(t))
    if not cols["features"]:
        raise HRAlignError(f"{pairs.path}: no robot clips selected for the action stage")
    table = {key: torch.cat(v) for key, v in cols.items()}
    if table["action"].ndim != 2 or table["action"].shape[0] != table["features"].shape[0]:
        raise HRAlignError(f"{pairs.path}: /robot/actions should have one row per frame, found shape "
                           f"{list(table['action'].shape)} for {table['features'].shape[0]} frames")
    return table


def token_table(pairs: PairsFile, domain: str, feats: dict[int, torch.Tensor], rows: tuple[np.ndarray, np.ndarray, np.ndarray],
                k: int, future: int = 0) -> dict[str, torch.Tensor]:
    """One row per labelled (clip, t) of ``domain``: features of frames t-k+1..t and the LAM tokens
    (and ``future``/``future_valid`` when ``future`` > 0, as :func:`action_table`)."""
    clip, t, codes = rows
    order = np.lexsort((t, clip))  # rows grouped by clip, as the per-clip features below
    clip, t, codes = clip[order], t[order], codes[order]
    tasks = pairs.clip_tasks(domain)
    parts, fut = [], []
    for c in np.unique(clip):
        sel = clip == c
        parts.append(context_features(feats[int(c)], t[sel], k))
        if future:
            fut.append(future_columns(feats[int(c)], t[sel], future))
    d = next(iter(feats.values())).shape[1] if feats else 0
    table = {
        "features": torch.cat(parts) if parts else torch.zeros(0, d * k),
        "tokens": torch.from_numpy(codes.astype(np.int64)),
        "task": torch.from_numpy(tasks[clip].astype(np.int64)),
        "clip": torch.from_numpy(clip.astype(np.int64)),
        "t": torch.from_numpy(t.astype(np.int64)),
    }
    if future:
        table["future"] = torch.cat([x["future"] for x in fut]) if fut else torch.zeros(0, d)
        table["future_valid"] = torch.cat([x["future_valid"] for x in fut]) if fut else torch.zeros(0)
    return table


def concat_tables(tables: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = set.intersection(*(set(t) for t in tables))
    return {k: torch.cat([t[k] for t in tables]) for k in keys}


def batch_of(table: dict[str, torch.Tensor], rows: torch.Tensor | None, instructions: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Rows ``rows`` (all when None) of ``table`` as a policy batch, with ``instruction`` added."""
    batch = {k: (v if rows is None else v[rows]) for k, v in table.items() if k not in ("clip", "t")}
    if instructions is not None:
        batch["instruction"] = instructions[batch["task"]]
    return batch
