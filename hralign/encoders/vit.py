"""ViT encoders on timm's VisionTransformer: D4R's MAE ViT-B/16 and any ``timm:`` ViT.

D4R (Dasari et al., 2023, data4robotics) ships MAE-pretrained ViT-B/16 weights (He et al.,
2022) under ``["features"]`` or ``["model"]`` in timm/MAE key names; the MAE decoder and
``mask_token`` are dropped, ``pos_embed`` is resized to the image size with timm's
``resample_abs_pos_embed``, and the feature is the (final-norm) CLS token, 768-d.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from hralign.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, Stage
from hralign.encoders.checkpoint import unwrap_state
from hralign.errors import HRAlignError

_DROP_PREFIXES = ("decoder", "mask_token", "head.", "fc_norm.")


class ViTEncoder(Encoder):
    """A timm VisionTransformer; stages ``embed``, ``blocks.0`` .. ``blocks.{L-1}``, ``head`` (norm + CLS)."""

    family = "vit"

    def __init__(
        self,
        name: str,
        model: nn.Module,
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__(name, int(model.num_features), image_size, mean, std)
        self.model = model
        self.depth = len(model.blocks)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, N, D)
        m = self.model
        return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))

    def _head(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, D)
        return self.model.forward_head(self.model.norm(x), pre_logits=True)

    def stages(self) -> list[Stage]:
        blocks = [(f"blocks.{i}", blk) for i, blk in enumerate(self.model.blocks)]
        return [("embed", self._embed), *blocks, ("head", self._head)]

    def stage_modules(self) -> dict[str, list[str]]:
        mods = {"embed": ["model.patch_embed", "model.cls_token", "model.reg_token", "model.pos_embed", "model.norm_pre"]}
        mods.update({f"blocks.{i}": [f"model.blocks.{i}"] for i in range(self.depth)})
        mods["head"] = ["model.norm", "model.fc_norm", "model.head"]
        return mods

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        return {"late": (f"blocks.{self.depth - 1}", "token", self.feature_dim)}

    def backbone(self) -> nn.Module:
        return self.model

    def convert_checkpoint(self, obj: Any, path: str) -> dict[str, torch.Tensor]:
        """MAE/timm state dict -> this model's keys: unwrap, drop decoder/mask token/heads, resize pos_embed."""
        obj = unwrap_state(obj)
        if not isinstance(obj, dict) or not obj:
            raise HRAlignError(f"{path}: expected a ViT state dict (under 'features' or 'model'), found {type(obj).__name__}")
        state = dict(obj)
        for prefix in ("module.", "_model.", "model."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(_DROP_PREFIXES)}
        pos = state.get("pos_embed")
        target = self.model.pos_embed
        if isinstance(pos, torch.Tensor) and target is not None and pos.shape != target.shape:
            prefix = 0 if getattr(self.model, "no_embed_class", False) else self.model.num_prefix_tokens
            grid = self.model.patch_embed.grid_size
            if pos.ndim != 3 or pos.shape[-1] != target.shape[-1]:
                raise HRAlignError(
                    f"{path}: pos_embed {list(pos.shape)} cannot be resized to {list(target.shape)} (embedding width differs)"
                )
            state["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(grid), num_prefix_tokens=prefix)
        return state


def d4r_vit_b16(image_size: int) -> ViTEncoder:
    """D4R's MAE ViT-B/16 at ``image_size`` (multiple of 16), CLS token features."""
    if image_size % 16:
        raise HRAlignError(f"`image_size` for d4r-vit-b16 should be a multiple of 16 but the value passed is {image_size}")
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, num_classes=0, img_size=image_size, global_pool="token"
    )
    return ViTEncoder("d4r-vit-b16", model, image_size)
