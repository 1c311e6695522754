"""The one encoder contract (docs/design.md, "Encoder"): input checks, preprocessing, staged forward, freezing.

Every backbone (R3M ResNets, D4R ViT / GroupNorm ResNet, timm, transformers, LAM) subclasses
:class:`Encoder` and only says what its stages are and how to read its official checkpoint.
The staged forward (``forward_until`` / ``forward_from``) lets a trainer cache everything
below the first adapted stage, the way HR-Align trains a late adapter on a frozen encoder.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hralign.errors import HRAlignError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Stage = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


class Encoder(nn.Module):
    """A frozen image encoder: ``forward(images) -> float [B, D]``.

    Parameters
    ----------
    name : str
        Registry name (``r3m-resnet50``, ``timm:resnet18``, ...).
    feature_dim : int
        D, the size of the returned feature.
    image_size : int
        Square side the images are resized to before the network.
    mean, std : tuple of float
        Per-channel normalisation applied after /255 (R3M and D4R: ImageNet statistics).

    Subclasses implement :meth:`stages` (ordered ``(name, callable)`` pairs whose composition is
    the whole network, the last one producing [B, D]) and, for official checkpoints,
    :meth:`convert_checkpoint` and :meth:`backbone`.
    """

    def __init__(
        self,
        name: str,
        feature_dim: int,
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 8:
            raise HRAlignError(f"`image_size` should be an integer >= 8 but the value passed is {image_size!r}")
        self.name = name
        self.feature_dim = int(feature_dim)
        self.image_size = int(image_size)
        # (x / 255 - mean) / std in exactly the order R3M / torchvision's Normalize compute it, so
        # features match the original pipelines bit for bit (a fused x * a + b differs by ~1e-6
        # relative). Buffers are not persistent: they are not weights.
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._frozen = False
        self._spec: dict[str, Any] = {"name": name, "image_size": self.image_size, "weights": None, "sha256": None}
        self._weights_modified = False

    # ----------------------------------------------------------------- subclass API
    def stages(self) -> list[Stage]:
        """Ordered ``(name, fn)`` pairs; composing them is the forward pass on preprocessed input."""
        raise NotImplementedError

    #: layer naming family ("resnet", "vit") for adapter target presets; None = generic
    family: str | None = None

    def stage_modules(self) -> dict[str, list[str]]:
        """Stage name -> module-name prefixes (relative to this encoder) that the stage runs."""
        return {}

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        """Placement -> (stage after which an inserted adapter runs, "conv" or "token", width)."""
        return {}

    def backbone(self) -> nn.Module:
        """The module whose state dict is the official checkpoint's (without prefixes)."""
        raise NotImplementedError

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        """Turn an official checkpoint object into a state dict for :meth:`backbone`."""
        raise HRAlignError(f"{path}: encoder {self.name} reads only hralign .safetensors weights")

    # ----------------------------------------------------------------- contract
    @property
    def stage_names(self) -> list[str]:
        return [n for n, _ in self.stages()]

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :func:`hralign.encoders.build_from_spec` rebuilds this encoder."""
        return copy.deepcopy(self._spec)

    def _stage_index(self, stage: str) -> int:
        names = self.stage_names
        if stage not in names:
            raise HRAlignError(f"stage {stage!r} is not a stage of {self.name}; stages are {', '.join(names)}")
        return names.index(stage)

    def forward_until(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Preprocessed input [B,3,S,S] -> the input of ``stage`` (run every stage before it)."""
        idx = self._stage_index(stage)
        for _, fn in self.stages()[:idx]:
            x = fn(x)
        return x

    def forward_from(self, h: torch.Tensor, stage: str) -> torch.Tensor:
        """Input of ``stage`` -> final features [B, D] (run ``stage`` and every later one)."""
        idx = self._stage_index(stage)
        for _, fn in self.stages()[idx:]:
            h = fn(h)
        return h

    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = self.preprocess(images)
        for _, fn in self.stages():
            x = fn(x)
        return x

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 [B,H,W,3] (or one [H,W,3]) or float [B,3,H,W] in [0,1] -> normalised float [B,3,S,S].

        Resizes (bilinear, antialiased) to ``image_size`` when needed and applies this encoder's
        own normalisation, so callers never need to know it. Anything else is an error, never a
        silent rescale (R3M expects 0-255, D4R 0-1: the classic confusion).
        """
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise HRAlignError(f"images: expected a uint8 array or tensor, got {type(images).__name__}")
        device = self._mean.device
        if images.dtype == torch.uint8:
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4 or images.shape[-1] != 3:
                raise HRAlignError(
                    f"images: uint8 input must be [B, H, W, 3] (channels last), got shape {list(images.shape)}"
                )
            x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        elif images.is_floating_point():
            if images.ndim != 4 or images.shape[1] != 3:
                raise HRAlignError(
                    f"images: float input must be [B, 3, H, W] in [0, 1], got shape {list(images.shape)}"
                )
            x = images.to(device, torch.float32, non_blocking=True)
            lo, hi = torch.aminmax(x)
            if lo.item() < -1e-6 or hi.item() > 1.0 + 1e-6:
                raise HRAlignError(
                    f"images: float input must lie in [0, 1], found values in [{lo.item():.3g}, {hi.item():.3g}]"
                    " (pass uint8 for 0-255 images)"
                )
        else:
            raise HRAlignError(f"images: expected dtype uint8 or float in [0, 1], got {images.dtype}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self._mean).div_(self._std)

    # ----------------------------------------------------------------- freezing
    def freeze(self) -> "Encoder":
        """Frozen: no gradients, eval mode that survives ``.train()`` (BatchNorm stats never move)."""
        self._frozen = True
        self.requires_grad_(False)
        super().train(False)
        return self

    def set_trainable(self, flag: bool = True) -> "Encoder":
        """Make every weight trainable (pretraining, full fine-tune) or freeze again."""
        if not flag:
            return self.freeze()
        self._frozen = False
        self._weights_modified = True
        self.requires_grad_(True)
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def train(self, mode: bool = True) -> "Encoder":
        return super().train(mode and not self._frozen)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, image_size={self.image_size}, frozen={self._frozen}"
