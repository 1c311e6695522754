"""The fields every training config shares: same names, same meaning, checked in one place.

Each trainer's config (``AdaptConfig``, ``PretrainConfig``, ``LAMTrainConfig``, the policy's
``TrainConfig``) subclasses :class:`TrainConfig`. The run mechanics (logging, trackers,
evaluation, checkpoints, device, precision, resume, the validation fraction) have one default everywhere; the
optimisation recipe (``steps``, ``lr``, ``lr_schedule``, ``warmup``, ``batch_size``) keeps each
method's published default, which a subclass states by redeclaring the field. No torch import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hralign.config_checks import check_choice, check_fraction, check_ints, check_number
from hralign.device import DEVICE_HELP, PRECISION_HELP, DeviceConfig
from hralign.errors import HRAlignError
from hralign.pairs.split import DEFAULT_VAL_FRACTION

LR_SCHEDULES = ("constant", "cosine", "linear")
# Accelerate's trackers that hralign keeps offline and under the run directory (hralign.train.trackers)
TRACKERS = ("tensorboard", "wandb")

# The only fields that may differ between an interrupted run and its --resume: how long it runs,
# how often and to which trackers it reports, and where it runs. Everything else changes the result and is refused.
RESUMABLE_FIELDS = ("out", "steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "device",
                    "precision", "log_with", "resume", "overwrite")


@dataclass
class TrainConfig:
    """Shared training fields (``hralign.train``); the CLI options of every trainer come from them."""

    steps: int = field(default=1000, metadata={"help": "Optimiser steps."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    lr_schedule: str = field(default="constant", metadata={"help": "Learning rate over the run (timm scheduler): "
                                                                   "constant | cosine (to 0 at --steps) | linear."})
    warmup: int = field(default=0, metadata={"help": "Linear warm-up steps from 0 to --lr before the schedule."})
    batch_size: int = field(default=32, metadata={"help": "Samples per optimiser step, summed over processes."})
    seed: int = field(default=0, metadata={"help": "Seed of init and of every batch (a function of seed and step): "
                                                   "same seed + flags = same weights on CPU."})
    log_every: int = field(default=10, metadata={"help": "Append the mean training logs of the last N steps to "
                                                         "metrics.jsonl."})
    eval_every: int = field(default=100, metadata={"help": "Evaluate every N steps (0 = only at the end)."})
    checkpoint_every: int = field(default=100, metadata={"help": "Write a resumable checkpoint every N steps "
                                                                 "(0 = only at the end)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "Checkpoints kept in OUT/checkpoints (the newest)."})
    val_fraction: float = field(default=DEFAULT_VAL_FRACTION, metadata={"help": "Share of pairs held out for evaluation when the "
                                                               "pairs file has no /split."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})
    log_with: str = field(default="none", metadata={"help": "Also log metrics.jsonl's figures to these experiment "
                                                            "trackers (Accelerate's): none | tensorboard | wandb, "
                                                            "comma-separated; they write under OUT/trackers, "
                                                            "offline (wandb: unless WANDB_MODE is set)."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out from its last checkpoint "
                                                          "(only --steps, the *-every options, --device, "
                                                          "--precision and --log-with may change)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing run directory."})

    def __post_init__(self) -> None:
        check_ints(self, ("steps", "batch_size", "log_every", "keep_checkpoints"), 1, flag=True)
        check_ints(self, ("warmup", "eval_every", "checkpoint_every", "seed"), 0, flag=True)
        check_number(self.lr, "lr", 0, lo_open=True, flag=True)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES, flag=True)
        check_fraction(self.val_fraction, "val_fraction", flag=True)
        DeviceConfig(self.device, self.precision)  # the names; the hardware is checked when the run starts
        parse_log_with(self.log_with)
        if self.resume and self.overwrite:
            raise HRAlignError("`--resume` and `--overwrite` exclude each other")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_log_with(value: Any) -> tuple[str, ...]:
    """``--log-with`` as tracker names (``none``: no tracker), checked against :data:`TRACKERS`."""
    names = tuple(dict.fromkeys(n.strip() for n in value.split(","))) if isinstance(value, str) else (value,)
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise HRAlignError(f"`--log-with` should be none or one or more of {', '.join(TRACKERS)} (comma-separated) "
                           f"but the value passed is {value!r}")
    return names

