"""Bare networks shared by the policies: R3M's BatchNorm MLP trunk and the trunk + action head.

R3M (Nair et al., 2022) evaluates frozen features with mjrl's ``BatchNormMLP``: BatchNorm1d on
the whole input (features and proprioception), then ReLU layers of 256. We keep exactly that.
"""

from __future__ import annotations

import torch
from torch import nn

from hralign.policy.heads import ActionHead, build_head


class MLPTrunk(nn.Module):
    """``BatchNorm1d(in) -> [Linear -> ReLU] x num_layers``; returns the last hidden state [B, hidden]."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)]
        d = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(d, hidden_dim), nn.ReLU()]
            d = hidden_dim
        self.body = nn.Sequential(*layers)
        self.out_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ActionNet(nn.Module):
    """Trunk + action head (``bc`` / ``continuous`` / ``binned``)."""

    def __init__(self, in_dim: int, action_dim: int, head: str = "bc", hidden_dim: int = 256, num_layers: int = 2,
                 num_bins: int = 256, gripper_dims: list[int] | None = None) -> None:
        super().__init__()
        self.trunk = MLPTrunk(in_dim, hidden_dim, num_layers)
        self.head: ActionHead = build_head(head, hidden_dim, action_dim, num_bins=num_bins, gripper_dims=gripper_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
