"""Pretrain an encoder on (human) video with R3M's objective (Nair et al., 2022) or another registered one.

``pretrain(PretrainConfig(pairs=..., out=...))`` trains, checkpoints, evaluates and writes an
encoder directory that ``hralign.load_encoder`` loads frozen. The objectives (R3M, R3M + VICReg,
MAE, temporal InfoNCE) are in :mod:`hralign.pretrain.objectives`, one registry; R3M's loss terms
are pure functions in :mod:`hralign.pretrain.losses`.
"""

from hralign.pretrain.config import PretrainConfig
from hralign.pretrain.trainer import PretrainResult, pretrain

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]
