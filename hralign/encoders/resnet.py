"""ResNet encoders: R3M's ResNet-18/34/50 and D4R's GroupNorm ResNet-18 (torchvision modules).

R3M (Nair et al., 2022, "R3M: A Universal Visual Representation for Robot Manipulation") uses a
torchvision ResNet with ``fc = Identity`` (512/512/2048-d) and normalises /255 + ImageNet
statistics inside. D4R (Dasari et al., 2023, "An Unbiased Look at Datasets for Visuo-Motor
Pre-Training", data4robotics) uses a ResNet-18 whose norms are GroupNorm(16).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from hralign.encoders.base import Encoder, Stage
from hralign.encoders.checkpoint import strip_prefix, unwrap_state
from hralign.errors import HRAlignError

RESNET_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
RESNET_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


class ResNetEncoder(Encoder):
    """A torchvision ResNet with ``fc = Identity``; stages stem, layer1..layer4, head (avgpool + flatten).

    Parameters
    ----------
    name : str
        Registry name.
    arch : {"resnet18", "resnet34", "resnet50"}
    image_size : int
        Input side after resize (R3M default 224).
    group_norm : int, optional
        When set, every BatchNorm is GroupNorm(group_norm, C) (D4R uses 16).
    """

    def __init__(self, name: str, arch: str, image_size: int = 224, group_norm: int | None = None) -> None:
        if arch not in RESNET_DIMS:
            raise HRAlignError(f"`arch` should be one of {', '.join(RESNET_DIMS)} but the value passed is {arch!r}")
        super().__init__(name, RESNET_DIMS[arch], image_size)
        kwargs: dict[str, Any] = {"weights": None}
        if group_norm:
            kwargs["norm_layer"] = lambda c: nn.GroupNorm(group_norm, c)
        self.arch = arch
        self.model = getattr(torchvision.models, arch)(**kwargs)
        self.model.fc = nn.Identity()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.maxpool(m.relu(m.bn1(m.conv1(x))))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model.avgpool(x), 1)  # (B, D)

    def stages(self) -> list[Stage]:
        m = self.model
        return [
            ("stem", self._stem),
            ("layer1", m.layer1),
            ("layer2", m.layer2),
            ("layer3", m.layer3),
            ("layer4", m.layer4),
            ("head", self._head),
        ]

    def stage_channels(self) -> dict[str, int]:
        """Channels of the map each stage outputs (where a bottleneck adapter may sit)."""
        mult = 4 if self.arch == "resnet50" else 1
        return {"stem": 64, "layer1": 64 * mult, "layer2": 128 * mult, "layer3": 256 * mult, "layer4": 512 * mult}

    family = "resnet"

    def stage_modules(self) -> dict[str, list[str]]:
        mods = {"stem": ["model.conv1", "model.bn1"], "head": []}
        mods.update({f"layer{i}": [f"model.layer{i}"] for i in range(1, 5)})
        return mods

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        ch = self.stage_channels()
        return {"early": ("layer1", "conv", ch["layer1"]), "middle": ("layer2", "conv", ch["layer2"]),
                "late": ("layer4", "conv", ch["layer4"])}

    def backbone(self) -> nn.Module:
        return self.model


class R3MEncoder(ResNetEncoder):
    """R3M ResNet; reads ``model.pt``: ``["r3m"]``, keys ``module.convnet.*``, language heads ignored."""

    PREFIX = "module.convnet."

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        if not isinstance(obj, dict) or "r3m" not in obj:
            found = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise HRAlignError(f"{path}: not an R3M checkpoint: expected a dict with key 'r3m', found {found}")
        state = obj["r3m"]
        # lang_enc / lang_rew (language reward heads) are not part of the visual encoder: ignored.
        conv = strip_prefix(state, self.PREFIX)
        if not conv:
            raise HRAlignError(
                f"{path}: ['r3m'] holds no '{self.PREFIX}*' keys (first keys: {', '.join(list(state)[:3])})"
            )
        conv.pop("fc.weight", None)
        conv.pop("fc.bias", None)
        return conv


class D4RResNetEncoder(ResNetEncoder):
    """D4R GroupNorm(16) ResNet-18; keys prefixed ``_model.`` (optionally under ``["features"]``/``["model"]``)."""

    PREFIX = "_model."

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        obj = unwrap_state(obj)
        if not isinstance(obj, dict):
            raise HRAlignError(f"{path}: expected a state dict, found {type(obj).__name__}")
        state = strip_prefix(obj, self.PREFIX)
        if not state:
            raise HRAlignError(f"{path}: no '{self.PREFIX}*' keys (first keys: {', '.join(list(obj)[:3])})")
        state.pop("fc.weight", None)
        state.pop("fc.bias", None)
        return state
