"""HR-Align's residual bottleneck adapter: x + up(ReLU(mid(ReLU(down(x))))).

1x1 convolutions on a feature map (ResNets) or linear layers on tokens (ViTs), bottleneck
C/reduction (C/4), grouped (g=8) down/up projections, a dense middle layer. Three are stacked
after the last stage by default ("late"), so everything below can be cached from the frozen
encoder. For r3m-resnet50 (C=2048) one adapter is
down 2048->512 g8 (131,072 + 512 bias) + mid 512->512 dense (262,144 + 512) + up 512->2048 g8
(131,072 + 2,048) = 527,360 parameters; three give 1,582,080 (HR-Align's figure).

Initialisation: a fresh adapter must be the identity. The original recipe zero-initialises the
middle layer and the biases; with ReLU that makes the middle layer's output exactly 0, where
ReLU's derivative is 0 in PyTorch, so no gradient ever reaches down/mid and only ``up.bias``
would learn. We therefore zero-initialise the LAST projection (``up.weight``) and all biases
(``zero_init="up"``, the LoRA/Houlsby way): still exactly the identity at step 0, and every
layer receives gradient from the second step on. ``zero_init="mid"`` reproduces the text
literally (identity, but mid/down stay dead) for comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from hralign.errors import HRAlignError

PLACEMENTS = ("early", "middle", "late")


@dataclass
class BottleneckConfig:
    """Configuration of the HR-Align bottleneck adapter (stored in adapter_config.json)."""

    placement: str = field(default="late", metadata={"help": "where: late (after the last stage), middle, early (ResNets)"})
    num_adapters: int = field(default=3, metadata={"help": "how many adapters are stacked at the placement"})
    reduction: int = field(default=4, metadata={"help": "bottleneck width = channels / reduction"})
    groups: int = field(default=8, metadata={"help": "groups of the down/up 1x1 convolutions (conv maps only)"})
    zero_init: str = field(default="up", metadata={"help": "which layer starts at zero: up (trainable identity) or mid"})

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise HRAlignError(f"`placement` should be one of {', '.join(PLACEMENTS)} but the value passed is {self.placement!r}")
        for key in ("num_adapters", "reduction", "groups"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HRAlignError(f"`{key}` should be a positive integer but the value passed is {value!r}")
        if self.zero_init not in ("up", "mid"):
            raise HRAlignError(f"`zero_init` should be 'up' or 'mid' but the value passed is {self.zero_init!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBottleneck(nn.Module):
    """One residual adapter on a feature map [B, C, H, W]."""

    def __init__(self, channels: int, reduction: int = 4, groups: int = 8, zero_init: str = "up") -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1 or channels % reduction:
            raise HRAlignError(f"bottleneck: channels {channels} not divisible by `reduction` {reduction}")
        if channels % groups or hidden % groups:
            raise HRAlignError(
                f"bottleneck: `groups` {groups} must divide channels {channels} and the bottleneck width {hidden}"
            )
        self.down = nn.Conv2d(channels, hidden, 1, groups=groups)
        self.mid = nn.Conv2d(hidden, hidden, 1)
        self.up = nn.Conv2d(hidden, channels, 1, groups=groups)
        _identity_init(self, zero_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        return x + self.up(torch.relu(self.mid(torch.relu(self.down(x)))))


class TokenBottleneck(nn.Module):
    """The token-MLP version for ViTs: on tokens [B, N, D] with linear layers (no groups)."""

    def __init__(self, dim: int, reduction: int = 4, zero_init: str = "up") -> None:
        super().__init__()
        hidden = dim // reduction
        if hidden < 1 or dim % reduction:
            raise HRAlignError(f"bottleneck: width {dim} not divisible by `reduction` {reduction}")
        self.down = nn.Linear(dim, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.up = nn.Linear(hidden, dim)
        _identity_init(self, zero_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> same
        return x + self.up(torch.relu(self.mid(torch.relu(self.down(x)))))


def _identity_init(block: nn.Module, zero_init: str) -> None:
    """Zero every bias and the chosen layer's weight, so the residual branch outputs exactly 0."""
    for layer in (block.down, block.mid, block.up):
        nn.init.zeros_(layer.bias)
    nn.init.zeros_(getattr(block, zero_init).weight)


def make_stack(kind: str, width: int, config: BottleneckConfig) -> nn.Sequential:
    """``num_adapters`` stacked adapters for a conv map (``kind="conv"``) or tokens (``"token"``)."""
    if kind == "conv":
        blocks = [ConvBottleneck(width, config.reduction, config.groups, config.zero_init) for _ in range(config.num_adapters)]
    else:
        blocks = [TokenBottleneck(width, config.reduction, config.zero_init) for _ in range(config.num_adapters)]
    return nn.Sequential(*blocks)
