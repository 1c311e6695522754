"""Policy configs (no torch import, as LeRobot's ``configuration_*.py``): one dataclass per model + training.

* :class:`BCConfig` - R3M's behaviour-cloning protocol (Nair et al., 2022): BatchNorm on the
  frozen features, two hidden layers of 256, optional proprioception; the output is one of the
  action heads (``bc`` = MSE as R3M, ``continuous`` = GR-1, ``binned`` = LAPA).
* :class:`LatentPolicyConfig` - LAPA / IGOR's latent-action policy (Ye et al., 2024; Chen et
  al., 2024): features of the current frame(s) + instruction embedding -> the LAM's latent tokens,
  then a small action head on the policy's hidden state + features, trained on a few robot demos.
* :class:`PolicyTrainConfig` - the shared training fields (:class:`hralign.train.TrainConfig`) plus what
  every policy trainer adds (weight decay, robot fraction, split); :class:`TrainConfig` adds the
  action and latent stages' steps and BC's defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hralign.config_checks import check_int, check_number, from_dict
from hralign.errors import HRAlignError
from hralign.train.config import TrainConfig as SharedTrainConfig

HEAD_NAMES = ("bc", "continuous", "binned")
FUTURE_LOSSES = ("mse", "cosine")


def _positive_int(obj: Any, name: str, lo: int = 1) -> None:
    check_int(getattr(obj, name), name, lo)


def parse_gripper_dims(spec: str, action_dim: int) -> list[int]:
    """``"last"`` -> [A-1], ``"none"`` -> [], ``"3"`` / ``"3,4"`` -> those (negative counts from the end)."""
    spec = str(spec).strip().lower()
    if spec == "none" or spec == "":
        return []
    if spec == "last":
        return [action_dim - 1]
    try:
        dims = [int(s) for s in spec.split(",")]
    except ValueError:
        raise HRAlignError(f"`gripper_dims` should be 'last', 'none' or comma-separated integers but the value "
                           f"passed is {spec!r}") from None
    out = sorted({d % action_dim for d in dims if -action_dim <= d < action_dim})
    if len(out) != len(set(dims)):
        raise HRAlignError(f"`gripper_dims` {spec!r}: indices must lie in -{action_dim}..{action_dim - 1} "
                           f"(the actions have {action_dim} dims)")
    return out


def _check_gripper_spec(spec: str) -> None:
    s = str(spec).strip().lower()
    if s in ("last", "none", ""):
        return
    try:
        [int(x) for x in s.split(",")]
    except ValueError:
        raise HRAlignError(f"`gripper_dims` should be 'last', 'none' or comma-separated integers but the value "
                           f"passed is {spec!r}") from None


class FromDict:
    """``to_dict`` / ``from_dict`` of the model configs: a saved config.json with an unknown key is refused by name."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Any:
        return from_dict(cls, data, source)


@dataclass
class ActionConfig(FromDict):
    """The robot action head shared by BC and the latent policy."""

    head: str = field(default="continuous", metadata={"help": "Action head: 'bc' (MSE, R3M), 'continuous' "
                                                                "(smooth-L1 arm + BCE gripper, GR-1) or 'binned' "
                                                                "(256 quantile bins per dim + cross-entropy, LAPA)."})
    hidden_dim: int = field(default=256, metadata={"help": "Width of the two hidden layers (R3M: 256)."})
    num_layers: int = field(default=2, metadata={"help": "Hidden layers of the action MLP (R3M: 2)."})
    proprio: bool = field(default=True, metadata={"help": "Feed the robot state (/robot/state) as proprioception "
                                                          "when the file has it."})
    num_bins: int = field(default=256, metadata={"help": "Bins per action dim for the 'binned' head (LAPA: 256)."})
    gripper_dims: str = field(default="last", metadata={"help": "Action dims trained with BCE by the 'continuous' "
                                                                 "head: 'last', 'none' or e.g. '3' / '6,7'."})
    context_frames: int = field(default=1, metadata={"help": "Frames of features fed per step: t-k+1..t "
                                                             "(clamped at the clip start)."})
    instruction: bool = field(default=False, metadata={"help": "Also feed the frozen MiniLM embedding of the task "
                                                               "instruction."})
    future_features: int = field(default=0, metadata={"help": "GR-1-style auxiliary: also predict the frozen encoder "
                                                              "features of frame t+DELTA from the trunk's hidden state "
                                                              "(0 = off)."})
    future_weight: float = field(default=0.5, metadata={"help": "Weight of the future-feature loss beside the action "
                                                                "(or token) loss."})
    future_loss: str = field(default="cosine", metadata={"help": "Future-feature loss on standardised features: 'mse' "
                                                              "or 'cosine'."})

    def __post_init__(self) -> None:
        if self.head not in HEAD_NAMES:
            raise HRAlignError(f"`head` should be one of {', '.join(HEAD_NAMES)} but the value passed is {self.head!r}")
        for name in ("hidden_dim", "num_layers", "context_frames"):
            _positive_int(self, name)
        _positive_int(self, "num_bins", 2)
        _positive_int(self, "future_features", 0)
        _check_gripper_spec(self.gripper_dims)
        w = self.future_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise HRAlignError(f"`future_weight` should be a non-negative number but the value passed is {w!r}")
        if self.future_loss not in FUTURE_LOSSES:
            raise HRAlignError(f"`future_loss` should be 'mse' or 'cosine' but the value passed is {self.future_loss!r}")


@dataclass
class BCConfig(ActionConfig):
    """R3M's behaviour-cloning baseline on frozen (or adapted) encoder features."""

    head: str = field(default="bc", metadata={"help": "Action head: 'bc' (MSE, R3M), 'continuous' (GR-1) or "
                                                        "'binned' (LAPA)."})


@dataclass
class LatentPolicyConfig(ActionConfig):
    """Latent-action policy (LAPA/IGOR) + robot action head on its hidden state and the features."""

    context_frames: int = field(default=2, metadata={"help": "Frames of features fed per step: t-k+1..t "
                                                             "(clamped at the clip start)."})
    instruction: bool = field(default=True, metadata={"help": "Feed the frozen MiniLM embedding of the task "
                                                              "instruction (LAPA conditions on language)."})
    latent_hidden_dim: int = field(default=256, metadata={"help": "Width of the latent policy's hidden layers."})
    latent_layers: int = field(default=2, metadata={"help": "Hidden layers of the latent policy."})
    finetune_trunk: bool = field(default=False, metadata={"help": "Let the action loss update the latent policy's "
                                                                  "trunk (default: frozen after latent training)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self, "latent_hidden_dim")
        _positive_int(self, "latent_layers")


def _non_negative(obj: Any, name: str, positive: bool = False) -> None:
    check_number(getattr(obj, name), name, 0, lo_open=positive)


@dataclass
class PolicyTrainConfig(SharedTrainConfig):
    """What every policy trainer adds to :class:`hralign.train.TrainConfig`: decay and which robot clips it learns from.

    BC / latent policy (:class:`TrainConfig`) and GR-1 (:class:`hralign.policy.gr1.GR1TrainConfig`)
    both subclass it and redeclare only the defaults their recipes change.
    """

    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    robot_fraction: float = field(default=1.0, metadata={"help": "Fraction of the training robot clips whose actions "
                                                                 "are used (e.g. 0.2: few labelled demos)."})
    split_by: str = field(default="pair", metadata={"help": "Held-out unit when the file has no /split: 'pair' or "
                                                            "'task'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self, "weight_decay")
        f = self.robot_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f <= 1.0:
            raise HRAlignError(f"`robot_fraction` should be a number in (0, 1] but the value passed is {f!r}")
        if self.split_by not in ("pair", "task"):
            raise HRAlignError(f"`split_by` should be 'pair' or 'task' but the value passed is {self.split_by!r}")


@dataclass
class TrainConfig(PolicyTrainConfig):
    """How a policy is trained (the model config says what it is); shared fields from :class:`PolicyTrainConfig`."""

    steps: int = field(default=1500, metadata={"help": "Optimiser steps of the action stage."})
    batch_size: int = field(default=256, metadata={"help": "Frames per step, summed over processes."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    latent_steps: int = field(default=1500, metadata={"help": "Optimiser steps of the latent-token stage "
                                                                "(latent policy only)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self, "latent_steps", 0)
