"""Forward dynamics model: (tokens of x_t, quantised latent action) -> tokens of x_{t+H}.

LAPA's LAQ decoder: transformer blocks over x_t's patch tokens with cross-attention to the latent
action tokens. Tokens are pixel patches (target 'pixels') or a frozen encoder's features (target
'features', as UniVLA does with DINOv2 to keep appearance out of the latent).

The output is a residual on x_t with a zero-initialised head, so an untrained FDM *is* the copy-x_t
baseline and every gain in reconstruction has to come through the latent action.
"""

from __future__ import annotations

import torch
from torch import nn

from hralign.lam.config import LAMConfig
from hralign.lam.layers import DecoderBlock


class FDM(nn.Module):
    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        n, p = int(config.target_tokens), int(config.target_token_dim)
        self.in_proj = nn.Linear(p, config.dim)
        self.pos = nn.Parameter(torch.randn(1, n, config.dim) * 0.02)
        self.action_proj = nn.Linear(config.code_dim, config.dim)
        self.action_pos = nn.Parameter(torch.randn(1, config.tokens, config.dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(config.dim, config.heads) for _ in range(config.fdm_depth))
        self.norm = nn.LayerNorm(config.dim)
        self.out = nn.Linear(config.dim, p)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, current: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """current (B, N, P) tokens of x_t, action (B, tokens, code_dim) -> predicted (B, N, P) of x_{t+H}."""
        x = self.in_proj(current) + self.pos
        ctx = self.action_proj(action) + self.action_pos
        for blk in self.blocks:
            x = blk(x, ctx)
        return current + self.out(self.norm(x))
