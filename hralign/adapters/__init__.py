"""Adapters for frozen encoders: PEFT methods (LoRA, LoHa, LoKr, IA3) and HR-Align's residual bottleneck.

>>> model = attach_adapter(load_encoder("r3m-resnet50"), "bottleneck")   # 1,582,080 trainable
>>> save_adapter(model, "out/adapter"); load_encoder("out/adapter")
"""

from __future__ import annotations

from hralign.adapters.bottleneck import BottleneckConfig
from hralign.adapters.io import read_adapter_meta, save_adapter
from hralign.adapters.model import (
    METHODS,
    AdaptedEncoder,
    attach_adapter,
    backbone_parameters,
    register_method,
    trainable_parameters,
)

__all__ = [
    "METHODS",
    "AdaptedEncoder",
    "BottleneckConfig",
    "attach_adapter",
    "backbone_parameters",
    "read_adapter_meta",
    "register_method",
    "save_adapter",
    "trainable_parameters",
]
