"""``timm:<model name>`` and ``hf:<local directory>`` encoders.

timm builds the architecture by name (``pretrained=False``: weights only from a local file you
pass); a transformers vision model (DINOv2, SigLIP, ViT ...) is read from a directory saved with
``save_pretrained`` with ``local_files_only=True``. Neither ever downloads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from hralign.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, Stage
from hralign.encoders.registry import register_encoder_prefix
from hralign.encoders.vit import ViTEncoder
from hralign.errors import HRAlignError


def _unwrap_state(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "features"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HRAlignError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return dict(obj)


def _probe(fn, image_size: int) -> torch.Tensor:
    """Run a zero image through ``fn`` to learn output shapes (architectures vary; this is exact)."""
    with torch.no_grad():
        return fn(torch.zeros(1, 3, image_size, image_size))


class TimmEncoder(Encoder):
    """Any non-ViT timm model: stages ``features`` (forward_features) and ``head`` (pooled pre-logits)."""

    def __init__(self, name: str, model: nn.Module, image_size: int, mean, std) -> None:
        super().__init__(name, int(model.num_features), image_size, mean, std)
        self.model = model
        self.model.eval()
        out = _probe(self.model.forward_features, image_size)
        self._kind = "conv" if out.ndim == 4 else "token"
        self._width = int(out.shape[1] if out.ndim == 4 else out.shape[-1])

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=True)

    def stages(self) -> list[Stage]:
        return [("features", self.model.forward_features), ("head", self._head)]

    def stage_modules(self) -> dict[str, list[str]]:
        return {"features": ["model"], "head": []}

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        return {"late": ("features", self._kind, self._width)}

    def backbone(self) -> nn.Module:
        return self.model

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        state = _unwrap_state(obj, path)
        own = self.model.state_dict()
        # classifier weights of a full timm checkpoint do not exist here (num_classes=0): dropped
        return {k: v for k, v in state.items() if k in own or not k.startswith(("fc.", "head.", "classifier."))}


def timm_encoder(model_name: str, image_size: int | None) -> Encoder:
    """``timm:<name>``: architecture from timm (no download), ImageNet-style normalisation from its config."""
    if model_name not in timm.list_models():
        close = timm.list_models(f"*{model_name[:6]}*")[:5]
        raise HRAlignError(f"timm has no model {model_name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = getattr(probe, "pretrained_cfg", {}) or {}
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if isinstance(probe, VisionTransformer):
        model = timm.create_model(model_name, img_size=size, **kwargs)
        return ViTEncoder(f"timm:{model_name}", model, size, mean, std)
    return TimmEncoder(f"timm:{model_name}", probe, size, mean, std)


class HFEncoder(Encoder):
    """A transformers vision model: stage ``backbone`` (last_hidden_state) then ``head`` (CLS token / mean map)."""

    def __init__(self, name: str, model: nn.Module, image_size: int, mean, std) -> None:
        out = _probe(lambda x: model(pixel_values=x).last_hidden_state, image_size)
        dim = int(out.shape[1] if out.ndim == 4 else out.shape[-1])
        super().__init__(name, dim, image_size, mean, std)
        self.model = model
        self._kind = "conv" if out.ndim == 4 else "token"

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).last_hidden_state  # (B, N, D) or (B, C, h, w)

    @staticmethod
    def _head(x: torch.Tensor) -> torch.Tensor:
        # CLS token for ViT-like models (DINOv2's last_hidden_state is already layer-normed); mean for maps.
        return x[:, 0] if x.ndim == 3 else x.mean(dim=(2, 3))

    def stages(self) -> list[Stage]:
        return [("backbone", self._backbone), ("head", self._head)]

    def stage_modules(self) -> dict[str, list[str]]:
        return {"backbone": ["model"], "head": []}

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        return {"late": ("backbone", self._kind, self.feature_dim)}

    def backbone(self) -> nn.Module:
        return self.model

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        return _unwrap_state(obj, path)


_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def hf_encoder(directory: str, image_size: int | None) -> Encoder:
    """``hf:<dir>``: a local transformers directory (config.json, optional weights, preprocessor config)."""
    from transformers import AutoConfig, AutoModel  # heavy import, only for hf: encoders

    path = Path(directory).expanduser()
    if not (path / "config.json").is_file():
        raise HRAlignError(f"hf:{directory}: no config.json in {path}; expected a directory saved with save_pretrained")
    has_weights = any((path / f).is_file() for f in _HF_WEIGHTS)
    try:
        if has_weights:
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(str(path), local_files_only=True))
    except (OSError, ValueError, KeyError) as e:
        raise HRAlignError(f"hf:{directory}: cannot be loaded from local files ({str(e).splitlines()[0][:200]})") from e
    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, None
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text(encoding="utf-8"))
        mean = tuple(cfg.get("image_mean", mean))
        std = tuple(cfg.get("image_std", std))
        crop = cfg.get("crop_size") or cfg.get("size") or {}
        size = crop.get("height") or crop.get("shortest_edge") if isinstance(crop, dict) else crop
    size = image_size or size or getattr(model.config, "image_size", None) or 224
    enc = HFEncoder(f"hf:{os.path.abspath(path)}", model.eval(), int(size), mean, std)
    enc.pretrained_source = str(path) if has_weights else None
    return enc


register_encoder_prefix("timm:", timm_encoder)
register_encoder_prefix("hf:", hf_encoder)
