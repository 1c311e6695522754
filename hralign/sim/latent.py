"""The latent-action chain in closed loop (LAPA's recipe, Ye et al., 2024) for the MetaWorld benchmarks.

A LAM (:mod:`hralign.lam`) trained on a human-video corpus labels the human-view clips of the
evaluation file; :class:`hralign.policy.LatentPolicy` is pretrained on those labels (stage
``latent``: frame features -> latent tokens), then trained end to end on the same robot demos as
BC (stage ``action``), as LAPA fine-tunes its whole model on robot demos. The control is the same
policy, same seed and init, with the latent stage skipped. Both stages run through
:func:`hralign.policy.train.run_stage`, the loop of ``hralign policy train``; nothing here is a
second trainer. The closed-loop rollout feeds one frame and no instruction per step, so the
policy reads the current frame's features (+ proprioception) only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy import LatentPolicy, LatentPolicyConfig, TrainConfig, load_token_labels
from hralign.policy.data import token_table
from hralign.policy.train import run_stage

# The LAM of the benchmark: docs/lam.md measured the conv IDM as the one whose codes carry action
# information on small frames (probe R^2 0.39 vs 0.26 for the transformer at 64 px).
LAM_OPTIONS: dict[str, Any] = {"idm": "conv", "conv_channels": 32, "dim": 64, "patch_size": 16, "gap": 3}


@dataclass
class SimLatentConfig:
    """What the latent rows of a closed-loop evaluation train on."""

    labels: str = field(metadata={"help": "labels.h5 of the evaluation pairs file (`hralign lam label`)."})
    latent_steps: int = field(default=1000, metadata={
        "help": "Latent-token steps on the LAM-labelled human clips (0 = the control without latent pretraining)."})

    def __post_init__(self) -> None:
        v = self.latent_steps
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise HRAlignError(f"`latent_steps` should be an integer >= 0 but the value passed is {v!r}")
        if not Path(self.labels).is_file():
            raise HRAlignError(f"labels {self.labels}: no such file; write it with `hralign lam label`")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_config() -> LatentPolicyConfig:
    """The latent policy of the closed loop: one frame, no instruction, proprioception, GR-1's continuous
    head without gripper BCE (MetaWorld's gripper action is in [-1, 1]), trunk trained in stage 2."""
    return LatentPolicyConfig(head="continuous", gripper_dims="none", context_frames=1, instruction=False,
                              proprio=True, finetune_trunk=True)


def train_sim_latent(pairs: PairsFile, human_feats: dict[int, torch.Tensor], table: dict[str, torch.Tensor],
                     cfg: SimLatentConfig, steps: int, batch_size: int, seed: int,
                     run: Path) -> tuple[LatentPolicy, dict[str, dict[str, float]]]:
    """Latent stage on every labelled human clip of ``pairs`` (features ``human_feats``, frozen base),
    then the action stage on ``table`` (BC's demo table); returns the policy and each stage's last logs."""
    labels = load_token_labels(cfg.labels, pairs)
    rows = labels.select("human", np.arange(pairs.num_clips("human")))
    if not len(rows[0]):
        raise HRAlignError(f"{cfg.labels}: no human-view labels for {pairs.path}; the latent stage trains on them")
    pcfg = policy_config()
    torch.manual_seed(seed)  # the same init with and without the latent stage
    policy = LatentPolicy(pcfg, int(table["features"].shape[1]), int(table["action"].shape[1]), labels.num_tokens,
                          labels.codebook_size, int(table["state"].shape[1]))
    policy.fit_head(table["action"])
    longest = max(steps, cfg.latent_steps)
    train = TrainConfig(steps=steps, batch_size=batch_size, seed=seed, log_every=max(1, longest // 10),
                        checkpoint_every=longest)
    finals: dict[str, dict[str, float]] = {}
    if cfg.latent_steps:
        tokens = token_table(pairs, "human", human_feats, rows, pcfg.context_frames)
        finals["latent"] = run_stage(policy, "latent", tokens, None, train, cfg.latent_steps, run / "latent",
                                     progress=False)
    policy.freeze_trunk(not pcfg.finetune_trunk)
    finals["action"] = run_stage(policy, "action", table, None, train, steps, run / "action", progress=False)
    return policy, finals


__all__ = ["LAM_OPTIONS", "SimLatentConfig", "policy_config", "train_sim_latent"]
