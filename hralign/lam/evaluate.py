"""Does a LAM's latent mean an action, and the same action for both embodiments?

- :func:`code_agreement`: on frame-aligned pairs (the human and robot clip of pair i show the
  same motion frame by frame, as the synthetic demo data does), how often the human pair
  (x_t, x_{t+H}) and the robot pair at the same t get the same code, against chance (the product
  of the two code histograms), plus cross-embodiment retrieval of the matched latent.
- :func:`probe_labels`: :func:`hralign.metrics.action_probe_r2` (the one action probe R² of every
  report: ridge, grouped K-fold by clip, with a shuffled-label control) from latents to the
  robot's actions over the gap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2, retrieval_topk
from hralign.pairs import PairsFile


def _row_lookup(clips: np.ndarray, ts: np.ndarray) -> dict[tuple[int, int], int]:
    return {(int(c), int(t)): i for i, (c, t) in enumerate(zip(clips, ts))}


def matched_rows(labels: dict[str, Any], pairs: PairsFile, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (human_rows, robot_rows, pair_of_row) of labels matched by pair and frame index t."""
    for d in ("human", "robot"):
        if d not in labels:
            raise HRAlignError(f"labels have no {d} rows; agreement needs both embodiments")
    hl = _row_lookup(labels["human"]["clip"], labels["human"]["t"])
    rl = _row_lookup(labels["robot"]["clip"], labels["robot"]["t"])
    sel = np.arange(pairs.num_pairs) if indices is None else np.asarray(indices, dtype=np.int64)
    hr, rr, pr = [], [], []
    for p in sel:
        h, r = (int(x) for x in pairs.pairs[p])
        t = 0
        while (h, t) in hl and (r, t) in rl:
            hr.append(hl[(h, t)])
            rr.append(rl[(r, t)])
            pr.append(int(p))
            t += 1
    if not hr:
        raise HRAlignError(f"{pairs.path}: no (pair, t) has labels in both embodiments; was labels.h5 made from this file?")
    return np.asarray(hr), np.asarray(rr), np.asarray(pr)


def code_agreement(labels: dict[str, Any], pairs: PairsFile, indices: np.ndarray | None = None) -> dict[str, Any]:
    """Cross-embodiment agreement of latent action codes at matched (pair, t).

    Returns ``agreement_per_token`` (fraction of matched rows with equal code at each token),
    ``agreement_all`` (all tokens equal), ``chance_per_token`` (sum_k p_h(k) p_r(k)),
    ``latent_retrieval`` (top-1/5 of finding the matched robot latent from the human one among all
    matched rows, cosine), and ``matched`` (rows compared).
    """
    hr, rr, _ = matched_rows(labels, pairs, indices)
    ch, cr = labels["human"]["codes"][hr], labels["robot"]["codes"][rr]  # (M, tokens)
    k = int(labels["attrs"]["codebook_size"])
    eq = ch == cr
    chance = []
    for j in range(ch.shape[1]):
        ph = np.bincount(ch[:, j], minlength=k) / len(ch)
        pr = np.bincount(cr[:, j], minlength=k) / len(cr)
        chance.append(float((ph * pr).sum()))
    res = {"matched": int(len(hr)), "agreement_per_token": [float(x) for x in eq.mean(0)],
           "agreement_mean": float(eq.mean()), "agreement_all": float(eq.all(1).mean()),
           "chance_per_token": chance, "chance_mean": float(np.mean(chance))}
    res["latent_retrieval"] = retrieval_topk(labels["human"]["latents"][hr], labels["robot"]["latents"][rr])
    return res


def gap_targets(pairs: PairsFile, domain: str, clips: np.ndarray, ts: np.ndarray, gap: int,
                name: str = "actions") -> np.ndarray:
    """Per labelled row, the per-frame ``name`` summed over frames t .. t+gap-1 (the motion commanded
    over the gap; for the synthetic data the effector displacement and closed-gripper count)."""
    if not pairs.has(domain, name):
        raise HRAlignError(f"{pairs.path}: /{domain}/{name} does not exist; the probe needs per-frame {name}")
    out = None
    cache: dict[int, np.ndarray] = {}
    for i, (c, t) in enumerate(zip(clips, ts)):
        c, t = int(c), int(t)
        if c not in cache:
            cache[c] = np.asarray(pairs.read_clip(domain, c, name=name), dtype=np.float64)
        a = cache[c][t:t + gap].sum(0)
        if out is None:
            out = np.empty((len(clips), a.shape[0]), np.float64)
        out[i] = a
    return out if out is not None else np.zeros((0, 0))


def probe_labels(labels: dict[str, Any], pairs: PairsFile, domain: str = "robot", folds: int = 5,
                 seed: int = 0, proprio: bool = False) -> dict[str, Any]:
    """:func:`hralign.metrics.action_probe_r2` on the ``domain`` rows of a labels file against that domain's actions.

    ``proprio``: also the proprio-only floor and latents + proprio (the state at each row's first frame).
    """
    if domain not in labels:
        raise HRAlignError(f"labels have no {domain} rows")
    rows = labels[domain]
    y = gap_targets(pairs, domain, rows["clip"], rows["t"], int(labels["attrs"]["gap"]))
    state = None
    if proprio:
        if not pairs.has(domain, "state"):
            raise HRAlignError(f"{pairs.path}: /{domain}/state does not exist; the proprio floor of the probe needs it")
        per_clip = {int(c): np.asarray(pairs.read_clip(domain, int(c), name="state")) for c in np.unique(rows["clip"])}
        state = np.stack([per_clip[int(c)][int(t)] for c, t in zip(rows["clip"], rows["t"])])  # (N, S)
    return action_probe_r2(rows["latents"], y, rows["clip"], folds=folds, seed=seed, proprio=state)
