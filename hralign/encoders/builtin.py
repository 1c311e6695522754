"""The built-in encoder names: one ``register_encoder`` line each."""

from __future__ import annotations

from hralign.encoders import external as _external  # noqa: F401  (registers timm: and hf:)
from hralign.encoders.registry import register_encoder
from hralign.encoders.resnet import D4RResNetEncoder, R3MEncoder
from hralign.encoders.vit import d4r_vit_b16

_R3M_HINT = "R3M users keep it as ~/.r3m/r3m_{size}/model.pt (R3M's load_r3m download location)."
_D4R_HINT = "D4R users keep it under visual_features/... (data4robotics README), e.g. visual_features/resnet18/IN_1M_resnet18.pth."

for _size in (18, 34, 50):
    register_encoder(
        f"r3m-resnet{_size}",
        (lambda s: (lambda image_size: R3MEncoder(f"r3m-resnet{s}", f"resnet{s}", image_size)))(_size),
        feature_dim=2048 if _size == 50 else 512,
        image_size=224,
        weights_hint=_R3M_HINT.format(size=_size),
        description=f"R3M ResNet-{_size} (torchvision, fc=Identity); reads R3M model.pt",
    )

register_encoder(
    "d4r-resnet18-gn",
    lambda image_size: D4RResNetEncoder("d4r-resnet18-gn", "resnet18", image_size, group_norm=16),
    feature_dim=512,
    image_size=224,
    weights_hint=_D4R_HINT,
    description="D4R ResNet-18 with GroupNorm(16); keys prefixed _model.",
)

register_encoder(
    "d4r-vit-b16",
    d4r_vit_b16,
    feature_dim=768,
    image_size=224,
    weights_hint=_D4R_HINT.replace("resnet18/IN_1M_resnet18.pth", "vit_base/SOUP_1M_DH.pth"),
    description="D4R MAE ViT-B/16 (timm); keys under features/model, CLS token",
)
