"""A frozen encoder made cheaper to run on CPU, for closed-loop evaluation and feature extraction.

Two changes that leave the features equal up to float rounding (~1e-6 relative):

* every eval-mode ``BatchNorm2d`` that directly follows a plain ``Conv2d`` inside torchvision's ResNet
  (the stem and each BasicBlock / Bottleneck, downsample included) is folded into the convolution
  with torch's own :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` (one op instead of two; the
  adapters' wrapped layers, e.g. PEFT's LoRA convolutions, are left as they are);
* weights in channels-last layout, which oneDNN's CPU convolutions run faster on (measured in
  ``benchmarks/eval_speed.py``).

The encoder is copied: the caller's module (the one adapters train or checkpoints save) is untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

# (conv, norm) attribute pairs of torchvision's ResNet modules
_PAIRS = {ResNet: (("conv1", "bn1"),), BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
          Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))}


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d and norm.track_running_stats


def fold_batchnorm(module: nn.Module) -> int:
    """Fold BatchNorm into the preceding convolution of every torchvision ResNet part of ``module`` (in place,
    eval mode only); returns the number of folds."""
    if module.training:
        raise ValueError("fold_batchnorm: the module is in training mode; folding uses the running statistics")
    folds = 0
    for m in module.modules():
        pairs = list(_PAIRS.get(type(m), ()))
        ds = getattr(m, "downsample", None)
        if isinstance(ds, nn.Sequential) and len(ds) == 2:
            pairs.append(("downsample", None))
        for conv_name, norm_name in pairs:
            if norm_name is None:  # downsample = Sequential(conv, bn)
                conv, norm = ds[0], ds[1]
                if _foldable(conv, norm):
                    m.downsample = nn.Sequential(fuse_conv_bn_eval(conv, norm))
                    folds += 1
                continue
            conv, norm = getattr(m, conv_name), getattr(m, norm_name)
            if _foldable(conv, norm):
                setattr(m, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(m, norm_name, nn.Identity())
                folds += 1
    return folds


def for_inference(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` in eval mode with BatchNorm folded and channels-last weights (module docstring)."""
    enc = copy.deepcopy(encoder).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    fold_batchnorm(enc)
    return enc.to(memory_format=torch.channels_last)


__all__ = ["fold_batchnorm", "for_inference"]
