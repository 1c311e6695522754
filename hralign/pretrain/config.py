"""Configuration of a pretraining run (`hralign pretrain`); the CLI options are generated from it.

:class:`PretrainConfig` holds what every objective shares (data, encoder, augmentations,
evaluation, the training layer's fields) and ``objective_config``, the chosen objective's own
config (:mod:`hralign.pretrain.objectives`: ``R3MConfig``, ``MAEConfig``, ...). Defaults follow R3M
(Nair et al., 2022; facebookresearch/r3m ``cfgs/config_rep.yaml``: Adam lr 1e-4, batch 32) except
where a small CPU demo needs otherwise, which the help text says (image size, batch size, steps).

``to_dict`` is one flat level (the shared fields, ``objective`` and the objective's fields), which
is what ``run.json`` records and ``--resume`` compares; an R3M run's keys are those of the runs
written before objectives existed plus :data:`LEGACY_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hralign.config_checks import check_choice, check_ints, check_number
from hralign.errors import HRAlignError
from hralign.pretrain.objectives import OBJECTIVES, objective_class
from hralign.train.config import TrainConfig

DOMAIN_CHOICES = ("human", "robot", "both")
MAX_COLOR_JITTER = 2.5  # the hue shift 0.2 s stays within torchvision's 0.5

# Fields added after runs were first written, with the value those runs had implicitly: a run.json
# without them is such a run (resume treats it as one, see hralign.pretrain.trainer).
LEGACY_FIELDS = {"objective": "r3m", "color_jitter": 0.0}


@dataclass
class PretrainConfig(TrainConfig):
    """Every shared flag of `hralign pretrain`; the objective's own flags live in ``objective_config``."""

    steps: int = field(default=250, metadata={"help": "Optimiser steps (R3M: 1.5M on Ego4D; a few hundred for the demo)."})
    batch_size: int = field(default=8, metadata={"help": "Clips per step, summed over processes; each objective draws "
                                                         "its frames from each (R3M: 5 per clip, batch 32)."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (R3M: 1e-4; on the demo 1e-3 gave the best held-out "
                                                    "time-contrastive accuracy in a few hundred steps, 1e-4 lowered it)."})
    pairs: str = field(default="", metadata={"help": "Pairs HDF5 file whose clips are the training video."})
    out: str = field(default="", metadata={"help": "Output directory: the encoder (hralign.json, model.safetensors), "
                                                  "R3M-layout model.pt, checkpoints/, metrics.jsonl, summary.json."})
    domain: str = field(default="human", metadata={"help": "Clips to train on: human | robot | both."})
    encoder: str = field(default="r3m-resnet18", metadata={"help": "Encoder to train: any registered ResNet/ViT name "
                                                                    "(r3m-resnet18|34|50, d4r-vit-b16, timm:<name>)."})
    weights: str | None = field(default=None, metadata={"help": "Start from these local weights (random init if omitted)."})
    trust_checkpoint: bool = field(default=False, metadata={"help": "Allow full unpickling of --weights (only for files you trust)."})
    image_size: int | None = field(default=64, metadata={"help": "Training/eval input size (R3M: 224; 64 keeps the CPU demo "
                                                                 "to minutes). 0 = the encoder's default."})
    objective: str = field(default="r3m", metadata={"help": "Pretraining objective: " + " | ".join(OBJECTIVES) + " (each "
                                                            "one's options are prefixed with its name, R3M's are "
                                                            "unprefixed; docs/pretrain.md)."})
    crop_scale: float = field(default=1.0, metadata={"help": "Every objective: smallest area share of the random resized "
                                                            "crop, the same crop across a sample's frames (R3M "
                                                            "'rctraj': 0.2); 1 = no crop (R3M's default doaug='none')."})
    color_jitter: float = field(default=0.0, metadata={"help": "Every objective: colour jitter strength s (SimCLR's: "
                                                               "brightness/contrast/saturation by up to 0.8 s, hue by up "
                                                               "to 0.2 s; SimCLR uses s = 1), one draw per sample; 0 = "
                                                               "off."})
    eval_frames: int = field(default=8, metadata={"help": "Frames per clip averaged into the clip embedding for kNN/retrieval."})
    knn_k: int = field(default=5, metadata={"help": "Neighbours of the kNN task-accuracy monitor."})
    objective_config: Any = field(default=None, metadata={"help": "The objective's config (R3MConfig for r3m, ...); None "
                                                                  "= its defaults. Not an option: its fields are."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints(self, ("eval_frames", "knn_k"), 1, flag=True)
        if self.image_size is not None and self.image_size < 0:
            raise HRAlignError(f"`--image-size` should be positive (or 0 for the encoder's default) but the value passed is {self.image_size}")
        if self.image_size == 0:
            self.image_size = None
        check_choice(self.domain, "domain", DOMAIN_CHOICES, flag=True)
        check_number(self.crop_scale, "crop_scale", 0, 1, lo_open=True, flag=True)
        check_number(self.color_jitter, "color_jitter", 0, MAX_COLOR_JITTER, flag=True)
        expected = objective_class(self.objective).config_class
        if self.objective_config is None:
            self.objective_config = expected()
        elif type(self.objective_config) is not expected:
            raise HRAlignError(f"`objective_config` should be a {expected.__name__} for --objective {self.objective} but "
                               f"the value passed is a {type(self.objective_config).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """One flat level: the shared fields, ``objective`` and the objective's own fields (run.json)."""
        shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "objective_config"}
        own = {f.name: getattr(self.objective_config, f.name) for f in fields(self.objective_config)}
        return {**shared, **own}

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainConfig":
        """Rebuild from ``to_dict`` output (a run.json's config); unknown keys are an error naming them.

        A dict without ``objective`` is an R3M run (written before objectives existed).
        """
        if not isinstance(data, dict):
            raise HRAlignError(f"pretrain config: expected an object, found {type(data).__name__}")
        shared = {f.name for f in fields(cls)} - {"objective_config"}
        config_class = objective_class(data.get("objective", LEGACY_FIELDS["objective"])).config_class
        own = {f.name for f in fields(config_class)}
        unknown = sorted(set(data) - shared - own)
        if unknown:
            raise HRAlignError(f"pretrain config: unknown keys {unknown} for objective "
                               f"{data.get('objective', 'r3m')!r}; known keys are {sorted(shared | own)}")
        return cls(**{k: v for k, v in data.items() if k in shared},
                   objective_config=config_class(**{k: v for k, v in data.items() if k in own}))


def objective_fields() -> dict[str, list[str]]:
    """Objective name -> the names of its config's fields (its options), in registry order."""
    return {name: [f.name for f in fields(cls.config_class)] for name, cls in OBJECTIVES.items()}

