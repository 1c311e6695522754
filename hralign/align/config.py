"""Configuration of an HR-Align adapter run (`hralign adapt`); the CLI options come from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from hralign.align.pooling import POOLING_METHODS
from hralign.errors import HRAlignError

# Fields that may differ between an interrupted run and its resumption.
RESUMABLE_FIELDS = ("steps", "eval_every", "save_every", "device", "cache_dir", "resume", "overwrite")


@dataclass
class AdaptConfig:
    """Every flag of `hralign adapt`. Defaults follow HR-Align (Adam, lr 1e-4, 5 frames, tau 0.1)."""

    pairs: str = field(default="", metadata={"help": "Pairs HDF5 file (see `hralign pairs --help`)."})
    out: str = field(default="", metadata={"help": "Run directory (adapter/, checkpoints/, metrics.jsonl, config.json)."})
    encoder: str = field(default="r3m-resnet18", metadata={"help": "Frozen encoder: registry name, encoder directory or `lam:DIR`."})
    weights: str | None = field(default=None, metadata={"help": "Local weights file for the encoder (random init if omitted)."})
    trust_checkpoint: bool = field(default=False, metadata={"help": "Allow full unpickling of --weights (only for files you trust)."})
    image_size: int | None = field(default=None, metadata={"help": "Input size of the encoder (its default unless given)."})
    adapter: str = field(default="bottleneck", metadata={"help": "Adapter method: bottleneck | lora | loha | lokr | ia3 | full (fine-tune every weight: the baseline)."})
    placement: str | None = field(default=None, metadata={"help": "Where adapters go (method default if omitted): late | middle | early | all ..."})
    adapter_options: str | None = field(default=None, metadata={"help": "More adapter options as JSON, e.g. '{\"groups\": 1}' or '{\"target\": \"^idm\\\\.head\\\\.[13]$\"}'."})
    rank: int | None = field(default=None, metadata={"help": "Rank r of LoRA-family adapters (method default if omitted)."})
    frames: int = field(default=5, metadata={"help": "Frames T sampled per clip and pooled (HR-Align: 5)."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per step, summed over processes (HR-Align: 200)."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate of Adam."})
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (AdamW); 0 = Adam."})
    steps: int | None = field(default=None, metadata={"help": "Optimiser steps (default 300, or from --epochs)."})
    epochs: float | None = field(default=None, metadata={"help": "Passes over the training pairs (alternative to --steps)."})
    warmup: int = field(default=20, metadata={"help": "Linear warm-up steps before the cosine decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0 = off)."})
    temperature: float = field(default=0.1, metadata={"help": "tau of the contrastive similarity exp(x.y/tau)."})
    frozen_negative: bool = field(default=True, metadata={"help": "Use the frozen robot feature as an extra negative (HR-Align)."})
    symmetric: bool = field(default=True, metadata={"help": "Average the human->robot and robot->human terms."})
    frame_weight: float = field(default=0.0, metadata={"help": "Weight of an extra per-frame term pulling each adapted robot frame onto its human partner frame (relative squared error; for frame-aligned pairs such as `sim collect`'s; 0 = HR-Align's loss only)."})
    pooling: str = field(default="mean", metadata={"help": "Frame pooling: mean | attention (instruction query, needs a text encoder)."})
    text_encoder: str = field(default="minilm", metadata={"help": "Text encoder for attention pooling: minilm or a local transformers dir."})
    augment: bool = field(default=False, metadata={"help": "Random resized crop per clip (turns the feature cache off)."})
    cache: bool = field(default=True, metadata={"help": "Cache frozen features and trunk activations when augmentation is off."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where feature caches live (default ~/.cache/hralign)."})
    val_fraction: float = field(default=0.2, metadata={"help": "Share of pairs held out when the file has no /split."})
    split_by: str = field(default="pair", metadata={"help": "Hold out whole pairs or whole tasks: pair | task."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and adapter init; same seed + flags = same weights on CPU."})
    eval_every: int = field(default=100, metadata={"help": "Evaluate on validation pairs every N steps (0 = only at the end)."})
    save_every: int = field(default=100, metadata={"help": "Write a checkpoint every N steps."})
    device: str = field(default="auto", metadata={"help": "cpu | cuda | cuda:N | auto."})
    resume: bool = field(default=False, metadata={"help": "Continue the run in --out from its last checkpoint."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing run directory."})

    def __post_init__(self) -> None:
        def positive(name: str, value, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if value is None or value <= 0:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be positive but the value passed is {value}")

        for name in ("frames", "batch_size", "lr", "temperature"):
            positive(name, getattr(self, name))
        positive("steps", self.steps, allow_none=True)
        positive("epochs", self.epochs, allow_none=True)
        positive("image_size", self.image_size, allow_none=True)
        if self.steps is not None and self.epochs is not None:
            raise HRAlignError("`--steps` and `--epochs` are alternatives; pass one of them")
        if self.pooling not in POOLING_METHODS:
            raise HRAlignError(f"`--pooling` should be one of {POOLING_METHODS} but the value passed is {self.pooling!r}")
        if self.split_by not in ("pair", "task"):
            raise HRAlignError(f"`--split-by` should be pair or task but the value passed is {self.split_by!r}")
        if not 0 < self.val_fraction < 1:
            raise HRAlignError(f"`--val-fraction` should be in (0, 1) but the value passed is {self.val_fraction}")
        for name in ("warmup", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be >= 0 but the value passed is {getattr(self, name)}")
        if self.adapter_options:
            try:
                opts = json.loads(self.adapter_options)
            except json.JSONDecodeError as e:
                raise HRAlignError(f"`--adapter-options` should be a JSON object but {self.adapter_options!r} is not JSON ({e})") from e
            if not isinstance(opts, dict):
                raise HRAlignError(f"`--adapter-options` should be a JSON object but the value passed is {self.adapter_options!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise HRAlignError("`--grad-clip` and `--weight-decay` should be >= 0")
        if not self.frame_weight >= 0:
            raise HRAlignError(f"`--frame-weight` should be >= 0 but the value passed is {self.frame_weight}")

    def adapter_options_dict(self) -> dict:
        """``--adapter-options`` parsed (checked in __post_init__)."""
        return json.loads(self.adapter_options) if self.adapter_options else {}

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: dict) -> list[str]:
        """Fields (outside RESUMABLE_FIELDS) whose value differs from a saved config dict."""
        out = []
        for f in fields(self):
            if f.name in RESUMABLE_FIELDS:
                continue
            mine, theirs = getattr(self, f.name), other.get(f.name, "<missing>")
            if mine != theirs:
                out.append(f"{f.name}: run has {theirs!r}, now {mine!r}")
        return out
