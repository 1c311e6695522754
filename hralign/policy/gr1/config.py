"""GR-1 configs (no torch import, as LeRobot's ``configuration_*.py``): the model and its two-stage training.

GR-1 (Wu et al., 2024, "Unleashing Large-Scale Video Generative Pre-training for Visual Robot
Manipulation"): a GPT-style causal transformer over the last H steps of (language, image, proprio)
tokens, a learned [ACT] query read out by the action heads (smooth-L1 arm, BCE gripper) and learned
[OBS] queries predicting the future; stage 1 pretrains on action-free video by future prediction
alone, stage 2 fine-tunes on robot demos with both losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.policy.config import (FUTURE_LOSSES, FromDict, PolicyTrainConfig, _check_gripper_spec, _non_negative,
                                   _positive_int)


@dataclass
class GR1Config(FromDict):
    """The GR-1-style policy: what it reads, how big it is, what it predicts."""

    history: int = field(default=4, metadata={"help": "Steps H the transformer sees: t-H+1..t (GR-1: 10). Every "
                                                      "training clip must have at least H frames."})
    chunk: int = field(default=1, metadata={"help": "Actions k predicted per step (t..t+k-1), executed with ACT's "
                                                    "temporal ensembling; 1 = one action per step."})
    future_delta: int = field(default=3, metadata={"help": "The [OBS] queries predict the frozen encoder's features "
                                                           "of frame t+DELTA (GR-1 predicts frame t+3)."})
    dim: int = field(default=128, metadata={"help": "Transformer width."})
    layers: int = field(default=2, metadata={"help": "Transformer layers (causal self-attention + MLP)."})
    heads: int = field(default=4, metadata={"help": "Attention heads; must divide `dim`."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout in the transformer (GR-1: 0.1; 0 here: with tens "
                                                          "of demos it slowed the fit, docs/policy.md)."})
    proprio: bool = field(default=True, metadata={"help": "Feed the robot state as a token per step when the data "
                                                          "has it (human clips get a learned 'no state' token)."})
    instruction: bool = field(default=True, metadata={"help": "Feed the frozen MiniLM embedding of the task "
                                                              "instruction as a token per step (GR-1 conditions on "
                                                              "language)."})
    gripper_dims: str = field(default="last", metadata={"help": "Action dims trained with BCE (values in [0, 1]): "
                                                                "'last', 'none' or e.g. '3' / '6,7'; the rest use "
                                                                "smooth-L1 on standardised values."})
    normalize_inputs: bool = field(default=True, metadata={"help": "Standardise the image features and the proprio "
                                                                   "per dim with the training frames' mean/std before "
                                                                   "their token projections (BC's BatchNorm does the "
                                                                   "same); off: raw inputs, which a frozen encoder "
                                                                   "gives at very unequal scales per dim."})
    future_weight: float = field(default=1.0, metadata={"help": "Weight of the future-feature loss beside the action "
                                                                "loss in stage 2 (stage 1 has only this loss)."})
    future_loss: str = field(default="mse", metadata={"help": "Future-feature loss on standardised features: 'mse' or "
                                                             "'cosine'."})
    ensemble_coeff: float = field(default=0.01, metadata={"help": "ACT's temporal-ensembling m: the prediction made i "
                                                                  "steps after the oldest one weighs exp(-m*i)."})

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "GR1Config":
        """A saved config; one written before ``normalize_inputs`` existed was trained on raw inputs and keeps them."""
        if "normalize_inputs" not in data:
            data = {**data, "normalize_inputs": False}
        return super().from_dict(data, source)

    def __post_init__(self) -> None:
        for name in ("history", "chunk", "future_delta", "dim", "layers", "heads"):
            _positive_int(self, name)
        if self.dim % self.heads:
            raise HRAlignError(f"`heads` should divide `dim` ({self.dim}) but the value passed is {self.heads!r}")
        _non_negative(self, "dropout")
        if self.dropout >= 1:
            raise HRAlignError(f"`dropout` should be in [0, 1) but the value passed is {self.dropout!r}")
        _non_negative(self, "future_weight")
        _non_negative(self, "ensemble_coeff")
        _check_gripper_spec(self.gripper_dims)
        if self.future_loss not in FUTURE_LOSSES:
            raise HRAlignError(f"`future_loss` should be 'mse' or 'cosine' but the value passed is {self.future_loss!r}")


@dataclass
class GR1TrainConfig(PolicyTrainConfig, FromDict):
    """The two stages: stage 1 on human-view clips (future only), stage 2 on robot demos (actions + future).

    The shared training fields (devices, precision, schedule, checkpoints, resume, weight decay,
    robot fraction, split) come from :class:`hralign.policy.config.PolicyTrainConfig`; GR-1's recipe
    redeclares the defaults it changes.
    """

    steps: int = field(default=1500, metadata={"help": "Stage-2 optimiser steps on robot demos (actions + future)."})
    batch_size: int = field(default=64, metadata={"help": "Windows of H steps per optimiser step, summed over "
                                                          "processes."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    lr_schedule: str = field(default="cosine", metadata={"help": "Learning rate over the run (timm scheduler): "
                                                                 "constant | cosine (to 0 at --steps) | linear. "
                                                                 "Cosine: the late small steps let the transformer "
                                                                 "settle into its demos (docs/policy.md)."})
    warmup: int = field(default=100, metadata={"help": "Linear warm-up steps from 0 to --lr before the schedule."})
    seed: int = field(default=0, metadata={"help": "Seed of init, clip subset, batches and dropout (CPU runs repeat "
                                                   "exactly, resumed or not)."})
    log_every: int = field(default=100, metadata={"help": "Steps between metrics.jsonl lines."})
    checkpoint_every: int = field(default=500, metadata={"help": "Steps between resumable checkpoints "
                                                                 "(0 = only at the end of each stage)."})
    pretrain_steps: int = field(default=0, metadata={"help": "Stage-1 optimiser steps on human-view clips without "
                                                             "actions (future prediction only); 0 skips stage 1."})
    pretrain_pairs: str = field(default="", metadata={"help": "Pairs file whose human clips (all of them) stage 1 "
                                                              "reads instead of --pairs' training human clips: a video "
                                                              "corpus of other tasks, as GR-1 pretrains on Ego4D (their "
                                                              "task names are the instructions)."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    robot_fraction: float = field(default=1.0, metadata={"help": "Fraction of the training robot clips whose actions "
                                                                 "stage 2 uses."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self, "pretrain_steps", 0)
        if self.pretrain_pairs and not Path(self.pretrain_pairs).is_file():
            raise HRAlignError(f"--pretrain-pairs {self.pretrain_pairs}: no such file; expected a pairs file with "
                               "human clips (the video stage 1 reads)")
        if self.pretrain_pairs and not self.pretrain_steps:
            raise HRAlignError(f"--pretrain-pairs {self.pretrain_pairs} is read by stage 1, which --pretrain-steps 0 "
                               "skips; pass --pretrain-steps N > 0")
