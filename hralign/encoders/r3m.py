"""R3M's checkpoint layout, read and written (Nair et al., 2022).

R3M's own loader does ``torch.load(model.pt)["r3m"]`` into a ``DataParallel``-wrapped module,
so visual keys are ``module.convnet.<torchvision resnet keys>``; ``module.lang_enc.*`` and
``module.lang_rew.*`` hold its language heads (not part of the visual encoder).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hralign.atomic import atomic_path
from hralign.encoders.resnet import R3MEncoder, ResNetEncoder
from hralign.errors import HRAlignError

PREFIX = R3MEncoder.PREFIX


def r3m_state(backbone: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """``{"r3m": {"module.convnet.<key>": tensor}}`` for a torchvision ResNet (fc excluded)."""
    state = {
        PREFIX + k: v.detach().to("cpu").clone()
        for k, v in backbone.state_dict().items()
        if not k.startswith("fc.")
    }
    return {"r3m": state}


def write_r3m_checkpoint(encoder: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``encoder``'s ResNet in R3M's ``model.pt`` layout (atomically) so R3M's loader accepts it."""
    if not isinstance(encoder, ResNetEncoder):
        raise HRAlignError(
            f"write_r3m_checkpoint: R3M's layout holds a torchvision ResNet; got {type(encoder).__name__}"
        )
    target = Path(path)
    with atomic_path(target, suffix=".pt") as tmp:
        torch.save(r3m_state(encoder.backbone()), tmp)
    return target
