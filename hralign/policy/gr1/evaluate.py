"""Offline evaluation of a saved GR-1 policy directory on held-out clips (``hralign policy eval``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hralign.device import Placement
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy.data import check_robot_actions, clip_split
from hralign.policy.gr1.model import GR1Policy
from hralign.policy.gr1.train import evaluate_windows, instruction_embeddings, load_clip_data
from hralign.policy.io import EncoderSource, check_feature_dim, recorded_source


def _heldout(meta: dict[str, Any], pairs: PairsFile) -> dict[str, np.ndarray]:
    recorded = meta.get("data", {}).get("heldout_clips")
    if recorded and meta.get("data", {}).get("pairs") == str(Path(pairs.path).resolve()):
        return {d: np.asarray(v, dtype=np.int64) for d, v in recorded.items()}
    t = meta.get("train", {})
    return clip_split(pairs, t.get("val_fraction", 0.2), t.get("split_by", "pair"), t.get("seed", 0))[1]


def evaluate_gr1(policy: GR1Policy, meta: dict[str, Any], policy_dir: str | os.PathLike, pairs_path: str | os.PathLike,
                 source: EncoderSource | None = None, labels: Any = None, progress: bool = False,
                 placement: Placement | None = None) -> dict[str, Any]:
    """Held-out action error (robot clips) and future-feature cosine (robot and human clips) of a loaded policy.

    GR-1's ``evaluate`` hook; ``labels`` (LAM labels, read by the latent policy's evaluation) are not used.

    ``placement`` (``--device`` / ``--precision``) runs the encoder pass, the costly part; the small
    transformer stays on CPU (as BC does in ``sim eval``)."""
    where = str(Path(policy_dir) / "config.json")
    pairs = PairsFile(pairs_path)
    source = recorded_source(meta, source, where)
    robot_enc = source.robot_encoder().to(placement.device) if placement is not None else source.robot_encoder()
    check_feature_dim(meta, robot_enc, where)
    held = _heldout(meta, pairs)
    instructions = instruction_embeddings(pairs.tasks, bool(policy.dims["instruction_dim"]))
    result: dict[str, Any] = {"policy": str(policy_dir), "kind": policy.name,
                              "future_delta": policy.config.future_delta,
                              "heldout_clips": {d: len(v) for d, v in held.items()}}
    robot_held = held.get("robot", np.zeros(0, np.int64))
    if len(robot_held):
        check_robot_actions(pairs, "gr1")
        if policy.dims["state_dim"] and not pairs.has("robot", "state"):
            raise HRAlignError(f"{pairs.path}: /robot/state does not exist but the policy was trained with proprioception")
        data = load_clip_data(pairs, "robot", robot_enc, robot_held, actions=True, state=policy.config.proprio,
                              progress=progress, placement=placement)
        a = next(iter(data.actions.values()))
        if a.shape[1] != policy.dims["action_dim"]:
            raise HRAlignError(f"{pairs.path}: /robot/actions has {a.shape[1]} dims, the policy predicts "
                               f"{policy.dims['action_dim']}")
        res = evaluate_windows(policy, data, robot_held, instructions)
        result["action"] = res.get("action")
        result["future_cosine"] = {"robot": res.get("future_cosine")}
    human_held = held.get("human", np.zeros(0, np.int64))
    if len(human_held):
        human_enc = source.human_encoder(robot_enc)
        human = load_clip_data(pairs, "human", human_enc.to(placement.device) if placement is not None else human_enc,
                               human_held, actions=False, state=False, progress=progress, placement=placement)
        result.setdefault("future_cosine", {})["human"] = evaluate_windows(
            policy, human, human_held, instructions, with_actions=False).get("future_cosine")
    return result

