"""Put an (adapted) hralign ResNet into a LeRobot ACT or Diffusion policy's vision backbone.

LeRobot (``lerobot/policies/act/modeling_act.py``, ``.../diffusion/modeling_diffusion.py``) builds
its vision backbone from a torchvision ResNet: ACT keeps ``IntermediateLayerGetter(resnet,
{"layer4": "feature_map"})`` with FrozenBatchNorm2d at ``policy.model.backbone``; Diffusion keeps
``nn.Sequential(*list(resnet.children())[:-2])`` at ``policy.diffusion.rgb_encoder.backbone``.
Both take images already normalised by LeRobot's processor and return the layer4 map.

Two routes, chosen by the adapter:

* **weights** (no adapter, or LoRA/LoHa/LoKr/IA3): the adapter is merged into the ResNet
  weights (:func:`hralign.adapters.export.merge_adapter`, PEFT's own ``merge``) and the plain
  torchvision state dict is loaded into LeRobot's backbone. Nothing of hralign stays in the policy.
* **module swap** (bottleneck adapters are non-linear modules of their own): LeRobot's backbone is
  replaced by :class:`ResNetTrunk`, which runs the encoder's stages up to (not including) the pooling
  head, inserted adapters included, and returns the same map shape.

The input contract is LeRobot's: float [B, 3, H, W] after its normalisation. R3M and D4R
expect ImageNet statistics, so set the image features' stats to :data:`IMAGENET_STATS` (or
normalise that way) when you use them. Imports no lerobot: it works on the policy object.

Example (runnable when ``lerobot`` is installed)::

    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    import hralign
    from hralign.integrations.lerobot import install_encoder

    policy = ACTPolicy(ACTConfig(input_features=..., output_features=..., vision_backbone="resnet18",
                                 pretrained_backbone_weights=None))
    encoder = hralign.load_encoder("runs/demo/adapter")      # r3m-resnet18 + HR-Align adapter
    route = install_encoder(policy, encoder)                  # "weights" or "module"
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from hralign.errors import HRAlignError

IMAGENET_STATS = {"mean": [[[0.485]], [[0.456]], [[0.406]]], "std": [[[0.229]], [[0.224]], [[0.225]]]}
_DIFFUSION_INDEX = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


class ResNetTrunk(nn.Module):
    """The encoder's stages before its pooling head: normalised [B, 3, H, W] -> layer4 map [B, C, h, w].

    Bottleneck adapters placed at ``early``/``middle``/``late`` are stages of their own and run here.
    ``dict_key`` makes it return ``{dict_key: map}`` as ACT's ``IntermediateLayerGetter`` does.
    """

    def __init__(self, encoder: nn.Module, dict_key: str | None = None, head: str = "head") -> None:
        super().__init__()
        names = list(encoder.stage_names)
        if head not in names or names[-1] != head:
            raise HRAlignError(f"{encoder.name}: stages {names} do not end in a pooling '{head}' stage; only "
                               "ResNet-style encoders whose adapters sit before the head can be swapped in")
        self.encoder = encoder
        self.dict_key = dict_key
        self._head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        out = self.encoder.forward_until(x, self._head)
        return {self.dict_key: out} if self.dict_key else out


def _resnet_arch(encoder: nn.Module) -> str:
    from hralign.encoders.resnet import ResNetEncoder

    base = getattr(encoder, "base", encoder)
    if not isinstance(base, ResNetEncoder):
        raise HRAlignError(f"encoder {getattr(encoder, 'name', type(encoder).__name__)}: LeRobot's ACT/Diffusion "
                           "backbones are torchvision ResNets; only hralign ResNet encoders (r3m-resnet18/34/50, "
                           "d4r-resnet18-gn) can be installed")
    return base.arch


def find_backbone(policy: nn.Module) -> tuple[str, nn.Module, list[tuple[nn.Module, str]]]:
    """(kind "act"/"diffusion", policy config, [(parent module, attribute)]) of every vision backbone."""
    cfg = getattr(policy, "config", None)
    model = getattr(policy, "model", None)
    if model is not None and isinstance(getattr(model, "backbone", None), nn.Module):
        return "act", cfg, [(model, "backbone")]
    diffusion = getattr(policy, "diffusion", None)
    rgb = getattr(diffusion, "rgb_encoder", None)
    if rgb is not None:
        encoders = list(rgb) if isinstance(rgb, nn.ModuleList) else [rgb]
        return "diffusion", cfg, [(e, "backbone") for e in encoders]
    raise HRAlignError(f"{type(policy).__name__}: no vision backbone found (expected a LeRobot ACTPolicy with "
                       "model.backbone or a DiffusionPolicy with diffusion.rgb_encoder.backbone)")


def torchvision_state_dict(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Plain torchvision ResNet keys (no ``fc``) of a ResNet encoder, PEFT adapters merged in."""
    _resnet_arch(encoder)
    if getattr(encoder, "adapter_method", None):
        if getattr(encoder, "peft_config", None) is None:
            raise HRAlignError(f"a {encoder.adapter_method} adapter is a module of its own and cannot be merged into "
                               "ResNet weights; use install_encoder (module swap)")
        from hralign.adapters.export import merge_adapter

        encoder = merge_adapter(encoder)
    return {k: v.detach().clone() for k, v in encoder.backbone().state_dict().items() if not k.startswith("fc.")}


def _load_into(target: nn.Module, state: dict[str, torch.Tensor], kind: str) -> None:
    if kind == "diffusion":
        state = {(_DIFFUSION_INDEX[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]): v for k, v in state.items()}
    own = target.state_dict()
    has_gn = any(isinstance(m, nn.GroupNorm) for m in target.modules())
    if has_gn and any(k.endswith("running_mean") for k in state):
        raise HRAlignError("LeRobot backbone uses GroupNorm (DiffusionConfig.use_group_norm=True) but the encoder "
                           "has BatchNorm statistics; set use_group_norm=False")
    # FrozenBatchNorm2d (ACT) has no num_batches_tracked buffer
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        raise HRAlignError(f"LeRobot {kind} backbone does not match the encoder (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}, wrong shape {bad[:3]}); is vision_backbone the same ResNet?")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)


def _freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm2d -> torchvision's FrozenBatchNorm2d (what ACT uses), so LeRobot's ``policy.train()``
    cannot move the encoder's statistics (Diffusion keeps plain BatchNorm2d)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def install_encoder(policy: nn.Module, encoder: nn.Module, route: str = "auto", train_backbone: bool = False) -> str:
    """Install ``encoder`` as the vision backbone of a LeRobot ACT/Diffusion ``policy``; returns the route.

    Parameters
    ----------
    policy : ACTPolicy or DiffusionPolicy
        Built with ``vision_backbone`` equal to the encoder's ResNet (e.g. "resnet18") and, for
        Diffusion, ``use_group_norm=False``.
    encoder : Encoder
        From ``hralign.load_encoder`` (plain or adapted ResNet).
    route : {"auto", "weights", "module"}
        "auto": "module" for bottleneck adapters, "weights" otherwise.
    train_backbone : bool
        Whether LeRobot's optimiser may update the backbone: on the weights route every backbone
        weight; on the module route only the adapter (the base stays frozen).
    """
    if route not in ("auto", "weights", "module"):
        raise HRAlignError(f"`route` should be 'auto', 'weights' or 'module' but the value passed is {route!r}")
    arch = _resnet_arch(encoder)
    kind, cfg, sites = find_backbone(policy)
    want = getattr(cfg, "vision_backbone", arch)
    if want != arch:
        raise HRAlignError(f"LeRobot policy vision_backbone is {want!r} but the encoder is a {arch}; build the policy "
                           f"with vision_backbone={arch!r}")
    if route == "auto":
        route = "module" if getattr(encoder, "adapter_method", None) and getattr(encoder, "peft_config", None) is None \
            else "weights"
    if route == "weights":
        state = torchvision_state_dict(encoder)
        for parent, attr in sites:
            target = getattr(parent, attr)
            _load_into(target, state, kind)
            target.requires_grad_(train_backbone)
            if not train_backbone:
                _freeze_batchnorm(target)
        return route
    for parent, attr in sites:
        enc = copy.deepcopy(encoder)  # one copy per camera encoder; the caller's encoder stays untouched
        enc.freeze()
        if train_backbone:
            if not getattr(enc, "adapter_method", None):
                raise HRAlignError("train_backbone on the module route trains the adapter; this encoder has none")
            enc.set_trainable(True)
        setattr(parent, attr, ResNetTrunk(enc, dict_key="feature_map" if kind == "act" else None))
    return route


def describe(policy: nn.Module) -> dict[str, Any]:
    """What sits in the policy's backbone(s) now: kind, module types, trainable parameter count."""
    kind, _, sites = find_backbone(policy)
    mods = [getattr(p, a) for p, a in sites]
    return {"kind": kind, "backbones": [type(m).__name__ for m in mods],
            "trainable": sum(p.numel() for m in mods for p in m.parameters() if p.requires_grad)}
