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

from hralign.device import DEVICE_HELP, DEVICES, PRECISION_HELP, PRECISIONS
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
        for name in ("steps", "batch_size", "log_every", "keep_checkpoints"):
            _integer(self, name, 1)
        for name in ("warmup", "eval_every", "checkpoint_every", "seed"):
            _integer(self, name, 0)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise HRAlignError(f"`--lr` should be a positive number but the value passed is {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise HRAlignError(f"`--lr-schedule` should be one of {', '.join(LR_SCHEDULES)} but the value passed is "
                               f"{self.lr_schedule!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 < self.val_fraction < 1:
            raise HRAlignError(f"`--val-fraction` should be in (0, 1) but the value passed is {self.val_fraction!r}")
        if not isinstance(self.device, str) or not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise HRAlignError(f"`--device` should be one of {', '.join(DEVICES)} (or cuda:N) but the value passed "
                               f"is {self.device!r}")
        if self.precision not in PRECISIONS:
            raise HRAlignError(f"`--precision` should be one of {', '.join(PRECISIONS)} but the value passed is "
                               f"{self.precision!r}")
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


def _integer(obj: Any, name: str, lo: int) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise HRAlignError(f"`--{name.replace('_', '-')}` should be an integer >= {lo} but the value passed is {v!r}")
