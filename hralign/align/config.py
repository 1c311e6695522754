"""Configuration of an HR-Align adapter run (`hralign adapt`); the CLI options come from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hralign.align.pooling import POOLING_METHODS
from hralign.align.terms import parse_term_options, parse_terms
from hralign.config_checks import check_choice, check_int, check_number
from hralign.errors import HRAlignError
from hralign.pairs.split import SPLIT_BY
from hralign.train.config import TrainConfig

# Besides the shared ones (hralign.train.config.RESUMABLE_FIELDS): where the feature cache lives.
RESUMABLE_FIELDS = ("cache_dir",)


@dataclass
class AdaptConfig(TrainConfig):
    """Every flag of `hralign adapt`. Defaults follow HR-Align (Adam, lr 1e-4, 5 frames, tau 0.1).

    The shared training fields (steps, lr, seed, device, resume ...) come from
    :class:`hralign.train.TrainConfig`; HR-Align's recipe redeclares its defaults.
    """

    steps: int = field(default=300, metadata={"help": "Optimiser steps."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate of AdamW (HR-Align: Adam, 1e-4)."})
    lr_schedule: str = field(default="cosine", metadata={"help": "Learning rate over the run (timm scheduler): "
                                                                 "constant | cosine (to 0 at --steps) | linear."})
    warmup: int = field(default=20, metadata={"help": "Linear warm-up steps from 0 to --lr before the schedule."})
    batch_size: int = field(default=16, metadata={"help": "Pairs per step, summed over processes (HR-Align: 200)."})
    pairs: str = field(default="", metadata={"help": "Pairs HDF5 file (see `hralign pairs --help`)."})
    out: str = field(default="", metadata={"help": "Run directory (adapter/, checkpoints/, metrics.jsonl, run.json, eval.json)."})
    encoder: str = field(default="r3m-resnet18", metadata={"help": "Frozen encoder: registry name, encoder directory or `lam:DIR`."})
    weights: str | None = field(default=None, metadata={"help": "Local weights file for the encoder (random init if omitted)."})
    trust_checkpoint: bool = field(default=False, metadata={"help": "Allow full unpickling of --weights (only for files you trust)."})
    image_size: int | None = field(default=None, metadata={"help": "Input size of the encoder (its default unless given)."})
    method: str = field(default="bottleneck", metadata={"help": "Adapter method: bottleneck | lora | loha | lokr | ia3 | full (fine-tune every weight: the baseline)."})
    placement: str | None = field(default=None, metadata={"help": "Where adapters go (method default if omitted): late | middle | early | all ..."})
    adapter_options: str | None = field(default=None, metadata={"help": "More adapter options as JSON, e.g. '{\"groups\": 1}' or '{\"target\": \"^idm\\\\.head\\\\.[13]$\"}'."})
    rank: int | None = field(default=None, metadata={"help": "Rank r of LoRA-family adapters (method default if omitted)."})
    frames: int = field(default=5, metadata={"help": "Frames T sampled per clip and pooled (HR-Align: 5)."})
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (AdamW); 0 = Adam."})
    grad_clip: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0 = off)."})
    temperature: float = field(default=0.1, metadata={"help": "tau of the contrastive similarity exp(x.y/tau)."})
    frozen_negative: bool = field(default=True, metadata={"help": "Use the frozen robot feature as an extra negative (HR-Align)."})
    symmetric: bool = field(default=True, metadata={"help": "Average the human->robot and robot->human terms."})
    frame_weight: float = field(default=0.0, metadata={"help": "Weight of an extra per-frame term pulling each adapted robot frame onto its human partner frame (relative squared error; for frame-aligned pairs such as `sim collect`'s; 0 = HR-Align's loss only)."})
    terms: str = field(default="", metadata={"help": "Extra objectives beside HR-Align's loss and --frame-weight, as NAME=WEIGHT, comma-separated: softdtw (per-pair temporal alignment, for pairs that are not frame-synchronised), sinkhorn or mmd (distribution-level: the batch's adapted-robot vs human frame sets); e.g. 'mmd=1' (docs/adapt.md)."})
    term_options: str | None = field(default=None, metadata={"help": "Options of the --terms as JSON, e.g. '{\"softdtw\": {\"gamma\": 0.1}}' (defaults in docs/adapt.md)."})
    pooling: str = field(default="mean", metadata={"help": "Frame pooling: mean | attention (instruction query, needs a text encoder)."})
    text_encoder: str = field(default="minilm", metadata={"help": "Text encoder for attention pooling: minilm or a local transformers dir."})
    augment: bool = field(default=False, metadata={"help": "Random resized crop per clip (turns the feature cache off)."})
    cache: bool = field(default=True, metadata={"help": "Cache frozen features and trunk activations when augmentation is off."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where feature caches live (default ~/.cache/hralign)."})
    split_by: str = field(default="pair", metadata={"help": "Hold out whole pairs or whole tasks: pair | task."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.frames, "frames", 1, flag=True)
        check_number(self.temperature, "temperature", 0, lo_open=True, flag=True)
        if self.image_size is not None:
            check_int(self.image_size, "image_size", 1, flag=True)
        check_choice(self.pooling, "pooling", POOLING_METHODS, flag=True)
        check_choice(self.split_by, "split_by", SPLIT_BY, flag=True)
        if self.adapter_options:
            try:
                opts = json.loads(self.adapter_options)
            except json.JSONDecodeError as e:
                raise HRAlignError(f"`--adapter-options` should be a JSON object but {self.adapter_options!r} is not JSON ({e})") from e
            if not isinstance(opts, dict):
                raise HRAlignError(f"`--adapter-options` should be a JSON object but the value passed is {self.adapter_options!r}")
        for name in ("grad_clip", "weight_decay", "frame_weight"):
            check_number(getattr(self, name), name, 0, flag=True)
        self.term_options_dict()  # checks --terms and --term-options

    def terms_dict(self) -> dict[str, float]:
        """``--terms`` parsed: {term name: weight}."""
        return parse_terms(self.terms or "")

    def term_options_dict(self) -> dict[str, dict]:
        """Each ``--terms`` term's options (its defaults updated by ``--term-options``)."""
        return parse_term_options(self.term_options, self.terms_dict())

    def adapter_options_dict(self) -> dict:
        """``--adapter-options`` parsed (checked in __post_init__)."""
        return json.loads(self.adapter_options) if self.adapter_options else {}
