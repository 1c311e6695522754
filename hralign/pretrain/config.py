"""Configuration of a pretraining run (`hralign pretrain`); the CLI options are generated from it.

Defaults follow R3M (Nair et al., 2022, "R3M: A Universal Visual Representation for Robot
Manipulation"; facebookresearch/r3m ``cfgs/config_rep.yaml``: Adam lr 1e-4, tcn 1.0, lang 1.0,
L1/L2 1e-5, alpha 0.2, 3 negatives) except where a small CPU demo needs otherwise, which the help
text says (image size, batch size, steps, scorer width, similarity, language weight), and the
instruction embeddings are standardized before the scorer sees them (``--lang-norm``; why in
``hralign.pretrain.losses.standardize_instructions`` and docs/pretrain.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hralign.config_checks import check_choice, check_int, check_ints, check_number, from_dict
from hralign.errors import HRAlignError
from hralign.train.config import TrainConfig

SIMILARITIES = ("l2", "cosine")
LANG_NORMS = ("standardize", "none")
DOMAIN_CHOICES = ("human", "robot", "both")


@dataclass
class PretrainConfig(TrainConfig):
    """Every flag of `hralign pretrain`; shared training fields from :class:`hralign.train.TrainConfig`."""

    steps: int = field(default=250, metadata={"help": "Optimiser steps (R3M: 1.5M on Ego4D; a few hundred for the demo)."})
    batch_size: int = field(default=8, metadata={"help": "Clips per step, summed over processes; 5 frames are drawn "
                                                         "from each (R3M: 32)."})
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
    text_encoder: str = field(default="auto", metadata={"help": "Sentence encoder for the language term: auto (minilm when "
                                                                "installed, else the term is off), minilm, a local transformers "
                                                                "directory, or none."})
    lang_norm: str = field(default="standardize", metadata={"help": "Instruction embeddings fed to the scorer: standardize "
                                                                   "(centre on the file's instructions, unit variance per "
                                                                   "dimension: what tells them apart) | none (raw, as R3M)."})
    tcn_weight: float = field(default=1.0, metadata={"help": "Weight of the time-contrastive loss (R3M: 1.0)."})
    lang_weight: float = field(default=3.0, metadata={"help": "Weight of the language-alignment loss (R3M: 1.0; 3.0 here: "
                                                              "the only task-carrying term, and on the demo it raised held-out "
                                                              "human kNN task accuracy, see docs/pretrain.md)."})
    l1_weight: float = field(default=1e-5, metadata={"help": "Weight of the L1 penalty on embeddings (R3M: 1e-5)."})
    l2_weight: float = field(default=1e-5, metadata={"help": "Weight of the L2 penalty on embeddings (R3M: 1e-5)."})
    similarity: str = field(default="l2", metadata={"help": "Similarity of the time-contrastive loss: l2 = negative L2 "
                                                           "distance (R3M default) | cosine (divided by --temperature)."})
    temperature: float | None = field(default=None, metadata={"help": "Logit scale: similarity / temperature (default 1.0 "
                                                                      "for l2 as R3M, 0.1 for cosine)."})
    num_negatives: int = field(default=3, metadata={"help": "Negatives from other clips per term (R3M: 3)."})
    alpha: float = field(default=0.2, metadata={"help": "Language term: the start frame is drawn from the first alpha and "
                                                        "the goal frame from the last alpha of a clip (R3M: 0.2)."})
    scorer_hidden: int = field(default=256, metadata={"help": "Width of the language scorer G's 4 hidden layers (R3M: 1024)."})
    crop_scale: float = field(default=1.0, metadata={"help": "Smallest area share of the random resized crop, the same crop "
                                                            "across a sample's frames (R3M 'rctraj': 0.2); 1 = no crop "
                                                            "(R3M's default doaug='none')."})
    eval_frames: int = field(default=8, metadata={"help": "Frames per clip averaged into the clip embedding for kNN/retrieval."})
    knn_k: int = field(default=5, metadata={"help": "Neighbours of the kNN task-accuracy monitor."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints(self, ("scorer_hidden", "eval_frames", "knn_k"), 1, flag=True)
        check_int(self.num_negatives, "num_negatives", 0, flag=True)
        for name in ("tcn_weight", "lang_weight", "l1_weight", "l2_weight"):
            check_number(getattr(self, name), name, 0, flag=True)
        if self.image_size is not None and self.image_size < 0:
            raise HRAlignError(f"`--image-size` should be positive (or 0 for the encoder's default) but the value passed is {self.image_size}")
        if self.image_size == 0:
            self.image_size = None
        check_choice(self.domain, "domain", DOMAIN_CHOICES, flag=True)
        check_choice(self.lang_norm, "lang_norm", LANG_NORMS, flag=True)
        check_choice(self.similarity, "similarity", SIMILARITIES, flag=True)
        if self.temperature is not None:
            check_number(self.temperature, "temperature", 0, lo_open=True, flag=True)
        if self.tcn_weight == 0 and self.lang_weight == 0:
            raise HRAlignError("`--tcn-weight` and `--lang-weight` are both 0: nothing would be learned; set one of them > 0")
        check_number(self.alpha, "alpha", 0, 0.5, flag=True)
        check_number(self.crop_scale, "crop_scale", 0, 1, lo_open=True, flag=True)

    @property
    def logit_temperature(self) -> float:
        """The temperature actually used: the explicit one, else 1.0 for l2 (R3M) and 0.1 for cosine."""
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.similarity == "l2" else 0.1

    @classmethod
    def from_dict(cls, data: dict, source: str = "pretrain config") -> "PretrainConfig":
        """Rebuild from ``to_dict`` output; unknown keys are an error naming them."""
        return from_dict(cls, data, source)

