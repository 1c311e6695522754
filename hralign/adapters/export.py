"""Export an adapted encoder: LoRA-family adapters merged into the backbone, bottlenecks kept as modules.

Formats
-------
``r3m``          ``{"r3m": {"module.convnet.<key>": ...}}``: R3M's own loader reads it, so an R3M
                 user swaps ``model.pt`` and changes nothing else (plain BatchNorm ResNets only).
``torchvision``  the ResNet's plain state dict (no ``fc``), as torchvision / LeRobot ResNet
                 backbones load it: ``m = resnet50(); m.fc = Identity(); m.load_state_dict(sd)``.
``safetensors``  the whole encoder's state dict (merged for PEFT methods: loads back with
                 ``load_encoder(name, weights=file)``; bottleneck: ``base.*`` + ``adapters.*``),
                 with hralign metadata.
``torchscript``  a traced module: uint8 ``[B, S, S, 3]`` at the encoder's image size -> ``[B, D]``,
                 preprocessing and adapter included.
Every file is written atomically.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import save_file
from torch import nn

from hralign.adapters.model import FULL, AdaptedEncoder
from hralign.atomic import atomic_path
from hralign.encoders import load_encoder
from hralign.encoders.base import Encoder
from hralign.encoders.r3m import r3m_state
from hralign.encoders.resnet import ResNetEncoder
from hralign.errors import HRAlignError

FORMATS = ("r3m", "torchvision", "safetensors", "torchscript")


def merge_adapter(model: AdaptedEncoder) -> Encoder:
    """A plain frozen encoder whose weights include the merged PEFT adapter (``model`` untouched).

    Uses PEFT's own ``merge()`` on every tuner layer, then puts the merged ``base_layer`` back
    in its parent, as ``PeftModel.merge_and_unload`` does.
    """
    if not isinstance(model, AdaptedEncoder):
        raise HRAlignError(f"merge_adapter: expected an adapted encoder, got {type(model).__name__}")
    if model.adapter_method == FULL:  # the fine-tuned weights are the encoder
        base = copy.deepcopy(model.base)
        base._spec = {**model.base.spec, "merged_adapter": FULL}
        base._weights_modified = True
        return base.freeze()
    if model.peft_config is None:
        raise HRAlignError(
            f"merge_adapter: a {model.adapter_method} adapter is a module of its own (non-linear), it cannot be "
            "merged into backbone weights; export it as safetensors or torchscript"
        )
    base = copy.deepcopy(model.base)
    tuner_layers = [(n, m) for n, m in base.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in tuner_layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = base.get_submodule(parent_name) if parent_name else base
        setattr(parent, child, layer.get_base_layer())
    base._spec = {**model.base.spec, "merged_adapter": model.adapter_method}
    base._weights_modified = True
    return base.freeze()


def _plain_resnet(model: AdaptedEncoder, fmt: str) -> nn.Module:
    base = model.base
    if not isinstance(base, ResNetEncoder) or any(isinstance(m, nn.GroupNorm) for m in base.modules()):
        raise HRAlignError(
            f"export --format {fmt}: needs a plain torchvision (BatchNorm) ResNet encoder, this adapter is on {base.name}; "
            "use --format safetensors or torchscript"
        )
    if model.peft_config is None and model.adapter_method != FULL:
        raise HRAlignError(
            f"export --format {fmt}: a {model.adapter_method} adapter adds modules a plain ResNet does not have, "
            f"so the {fmt} layout cannot hold it; use --format safetensors or torchscript"
        )
    return merge_adapter(model).backbone()


class _Traceable(nn.Module):
    def __init__(self, model: Encoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def export_adapter(adapter: str | os.PathLike | AdaptedEncoder, fmt: str, out: str | os.PathLike) -> Path:
    """Write ``adapter`` (a directory from ``save_adapter`` or a model) as ``fmt`` to ``out``."""
    if fmt not in FORMATS:
        raise HRAlignError(f"export: format {fmt!r} is unknown; expected one of {', '.join(FORMATS)}")
    model = adapter if isinstance(adapter, AdaptedEncoder) else load_encoder(adapter)
    if not isinstance(model, AdaptedEncoder):
        raise HRAlignError(f"export: {adapter} holds no adapter (hralign.json format is not 'adapter')")
    target = Path(out)
    if fmt in ("r3m", "torchvision"):
        backbone = _plain_resnet(model, fmt)
        if fmt == "r3m":
            payload = r3m_state(backbone)
        else:
            payload = {k: v.detach().clone() for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
        with atomic_path(target, suffix=".pt") as tmp:
            torch.save(payload, tmp)
        return target
    exported: Encoder = merge_adapter(model) if model.peft_config is not None else model
    if fmt == "safetensors":
        meta = {
            "hralign_format": "exported-encoder",
            "encoder": json.dumps(model.base.spec),
            "method": model.adapter_method,
            "merged": str(model.peft_config is not None).lower(),
            "options": json.dumps(model.adapter_options),
        }
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in exported.state_dict().items()}
        with atomic_path(target, suffix=".safetensors") as tmp:
            save_file(state, str(tmp), metadata=meta)
        return target
    example = torch.zeros(1, model.image_size, model.image_size, 3, dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        # The input checks are Python branches; tracing fixes them for uint8 [B, S, S, 3], which is
        # the documented input of the exported module, so TracerWarning about them is expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_Traceable(exported.eval()), example, check_trace=False)
    with atomic_path(target, suffix=".pt") as tmp:
        traced.save(str(tmp))
    return target
