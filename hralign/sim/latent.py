"""The latent-action chain in closed loop (LAPA's recipe, Ye et al., 2024) for the MetaWorld benchmarks.

A LAM (:mod:`hralign.lam`) trained on a human-video corpus labels the human-view clips of the
evaluation file; :class:`hralign.policy.LatentPolicy` is pretrained on those labels (stage
``latent``: frame features -> latent tokens), then trained end to end on the same robot demos as
BC (stage ``action``), as LAPA fine-tunes its whole model on robot demos. The control is the same
policy, same seed and init, with the latent stage skipped. Both stages run through
:func:`hralign.policy.train.run_stage`, the loop of ``hralign policy train``. The closed-loop rollout
feeds one frame and no instruction per step, so the policy reads the current frame's features
(+ proprioception) only. The training itself is the latent
kind's ``fit_demos`` hook (:func:`hralign.policy.demos.fit_latent_demos`); this module says what the
benchmark's latent rows train (labels, latent steps, the policy's config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hralign.errors import HRAlignError
from hralign.policy import LatentPolicyConfig, get_policy_kind

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
    head without gripper BCE (MetaWorld's gripper action is in [-1, 1]), trunk trained in stage 2
    (the latent kind's closed-loop defaults)."""
    return LatentPolicyConfig(**get_policy_kind("latent").closed_loop_defaults)


def training_options(cfg: SimLatentConfig) -> dict[str, Any]:
    """The latent kind's ``fit_demos`` options (:func:`hralign.policy.demos.fit_latent_demos`) of ``cfg``."""
    return {"labels": cfg.labels, "latent_steps": cfg.latent_steps}


__all__ = ["LAM_OPTIONS", "SimLatentConfig", "policy_config", "training_options"]
