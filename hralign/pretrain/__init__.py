"""Pretrain an encoder on (human) video with R3M's objective (Nair et al., 2022).

``pretrain(PretrainConfig(pairs=..., out=...))`` trains, checkpoints, evaluates and writes an
encoder directory that ``hralign.load_encoder`` loads frozen. Loss terms are pure functions in
:mod:`hralign.pretrain.losses`.
"""

from hralign.pretrain.config import PretrainConfig
from hralign.pretrain.trainer import PretrainResult, pretrain

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]
