"""Offline evaluation of a saved per-frame policy on held-out clips (``hralign policy eval``).

* action error: MSE and L1 per action dim (and their means) between ``select_action`` and
  ``/robot/actions`` on every frame of the held-out robot clips;
* latent-token accuracy per embodiment (latent policies): the fraction of (frame, token) whose
  predicted code equals the LAM's label, on held-out human and robot clips separately.

Held-out clips are the ones recorded at training time (the split of ``split_pairs``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hralign.device import Placement, resolve
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy.data import action_table, batch_of, check_robot_actions, clip_split, token_table
from hralign.policy.features import features_by_clip
from hralign.policy.io import EncoderSource, check_feature_dim, recorded_source
from hralign.policy.labels import TokenLabels, load_token_labels
from hralign.policy.train import instruction_table


def _heldout(meta: dict[str, Any], pairs: PairsFile) -> dict[str, np.ndarray]:
    recorded = meta.get("data", {}).get("heldout_clips")
    same_file = meta.get("data", {}).get("pairs") == str(Path(pairs.path).resolve())
    if recorded and same_file:
        return {d: np.asarray(v, dtype=np.int64) for d, v in recorded.items()}
    t = meta.get("train", {})
    return clip_split(pairs, t.get("val_fraction", 0.2), t.get("split_by", "pair"), t.get("seed", 0))[1]


def action_errors(pred: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """MSE / L1 per dim and their means."""
    err = pred.float() - target.float()
    mse, l1 = (err ** 2).mean(0), err.abs().mean(0)
    return {"mse": [float(x) for x in mse], "l1": [float(x) for x in l1], "mse_mean": float(mse.mean()),
            "l1_mean": float(l1.mean()), "frames": int(err.shape[0])}


def evaluate_frame_policy(policy: nn.Module, meta: dict[str, Any], policy_dir: str | os.PathLike,
                          pairs_path: str | os.PathLike, source: EncoderSource | None = None,
                          labels: str | os.PathLike | TokenLabels | None = None, progress: bool = False,
                          placement: Placement | None = None) -> dict[str, Any]:
    """Held-out action error of a loaded per-frame policy and, for one that predicts latent tokens
    (``predict_tokens``), its token accuracy per embodiment: the ``evaluate`` hook of every kind
    registered without one (:func:`hralign.policy.evaluate_policy` loads the policy and picks the hook).
    """
    placement = placement or resolve(None)
    policy = policy.to(placement.device)
    where = str(Path(policy_dir) / "config.json")
    pairs = PairsFile(pairs_path)
    source = recorded_source(meta, source, where)
    robot_enc = source.robot_encoder().to(placement.device)
    check_feature_dim(meta, robot_enc, where)
    held = _heldout(meta, pairs)
    k = int(getattr(policy.config, "context_frames", 1))
    instructions = instruction_table(pairs.tasks, bool(policy.dims.get("instruction_dim", 0)))
    if instructions is not None and list(pairs.tasks) != list(meta.get("tasks", pairs.tasks)):
        warnings.warn(f"{pairs.path}: task instructions differ from the training file's", stacklevel=2)
    result: dict[str, Any] = {"policy": str(policy_dir), "kind": policy.name,
                              "heldout_clips": {d: len(v) for d, v in held.items()}}
    robot_held = held.get("robot", np.zeros(0, np.int64))
    robot_feats = (features_by_clip(robot_enc, pairs, "robot", robot_held, progress=progress, placement=placement)
                   if len(robot_held) else {})
    if len(robot_held):
        result["action"] = _action_result(policy, pairs, robot_feats, robot_held, k, instructions, placement)
    if hasattr(policy, "predict_tokens"):
        result["latent"] = _token_result(policy, meta, pairs, labels, held, robot_feats, source, robot_enc, k,
                                         instructions, progress, placement)
    return result


def _action_result(policy: nn.Module, pairs: PairsFile, robot_feats: dict[int, torch.Tensor], robot_held: np.ndarray,
                   k: int, instructions: torch.Tensor | None, placement: Placement) -> dict[str, Any]:
    """Action MSE / L1 of ``select_action`` on every frame of the held-out robot clips."""
    check_robot_actions(pairs, getattr(policy.config, "head", policy.name))
    want_state = policy.dims.get("state_dim", 0) > 0
    if want_state and not pairs.has("robot", "state"):
        raise HRAlignError(f"{pairs.path}: /robot/state does not exist but the policy was trained with proprioception")
    table = action_table(pairs, robot_feats, robot_held, k, want_state)
    if table["action"].shape[1] != policy.dims["action_dim"]:
        raise HRAlignError(f"{pairs.path}: /robot/actions has {table['action'].shape[1]} dims, the policy "
                           f"predicts {policy.dims['action_dim']}")
    pred = policy.select_action(_to(batch_of(table, None, instructions), placement.device)).cpu()
    return {**action_errors(pred, table["action"]), "clips": int(len(robot_held))}


def _token_result(policy: nn.Module, meta: dict[str, Any], pairs: PairsFile, labels: Any,
                  held: dict[str, np.ndarray], robot_feats: dict[int, torch.Tensor], source: EncoderSource,
                  robot_enc: nn.Module, k: int, instructions: torch.Tensor | None, progress: bool,
                  placement: Placement) -> dict[str, Any]:
    """Latent-token accuracy per embodiment on the held-out clips the labels cover."""
    src = labels if labels is not None else meta.get("data", {}).get("labels")
    if src is None or (not isinstance(src, TokenLabels) and not Path(src).is_file()):
        return {"skipped": f"labels file {src} not found; pass --labels"}
    tl = src if isinstance(src, TokenLabels) else load_token_labels(src, pairs)
    if tl.num_tokens != policy.dims["num_tokens"] or tl.codebook_size != policy.dims["codebook_size"]:
        raise HRAlignError(f"{tl.source}: {tl.num_tokens} tokens x {tl.codebook_size} codes, the policy predicts "
                           f"{policy.dims['num_tokens']} x {policy.dims['codebook_size']}")
    out: dict[str, Any] = {}
    for d in ("human", "robot"):
        rows = tl.select(d, held.get(d, np.zeros(0, np.int64)))
        if not len(rows[0]):
            continue
        if d == "robot":
            feats = robot_feats
        else:
            feats = features_by_clip(source.human_encoder(robot_enc).to(placement.device), pairs, d, np.unique(rows[0]),
                                 progress=progress, placement=placement)
        tab = token_table(pairs, d, feats, rows, k)
        pred = policy.predict_tokens(_to(batch_of(tab, None, instructions), placement.device)).cpu()
        hit = (pred == tab["tokens"]).float()
        out[d] = {"token_accuracy": float(hit.mean()), "all_tokens_accuracy": float(hit.all(1).float().mean()),
                  "frames": int(hit.shape[0]), "chance": float(_majority_rate(tl, d, tab["tokens"]))}
    return out


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _majority_rate(tl: TokenLabels, domain: str, tokens: torch.Tensor) -> float:
    """Accuracy of always predicting each token's most frequent code (a floor to compare against)."""
    rates = []
    for j in range(tokens.shape[1]):
        counts = torch.bincount(tokens[:, j], minlength=tl.codebook_size)
        rates.append(float(counts.max()) / max(1, int(tokens.shape[0])))
    return float(np.mean(rates)) if rates else 0.0
