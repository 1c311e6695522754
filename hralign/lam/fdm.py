"""Forward dynamics model: (tokens of x_t, quantised latent action) -> tokens of x_{t+H}.

LAPA's LAQ decoder: transformer blocks over x_t's patch tokens with cross-attention to the latent
action tokens. Tokens are pixel patches (target 'pixels') or a frozen encoder's features (target
'features', as UniVLA does with DINOv2 to keep appearance out of the latent).

The output is a residual on x_t with a zero-initialised head, so an untrained FDM *is* the copy-x_t
baseline and every gain in reconstruction has to come through the latent action.

Two heads turn the transformer's tokens into that residual (``LAMConfig.fdm_decoder``):

- ``linear`` (LAPA): one linear map per token back to its patch. On small models each patch is
  rebuilt from a ``dim``-wide vector, so rolled-out frames blur into patch-sized blocks.
- ``conv`` (pixel targets only): the token grid is upsampled by a small U-Net-style conv decoder
  to full resolution, with skip features of x_t at every scale, and predicts the residual per
  pixel (the way video world models such as iVideoGPT/Genie decode with conv upsamplers rather than
  per-patch projections). Patch borders no longer exist in the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hralign.lam.config import LAMConfig
from hralign.lam.layers import DecoderBlock, patchify, unpatchify


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm + GELU (GroupNorm: batch statistics would make rollouts batch-dependent)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(1, cout), nn.GELU())


class ConvDecoder(nn.Module):
    """Token grid (B, N, dim) + x_t (B, 3, S, S) in [0, 1] -> full-resolution features (B, channels, S, S).

    Levels: the image S and S/2, ..., S/patch (the token grid); ``log2(patch)`` upsamplings.
    Channels grow from ``channels`` at full resolution, doubling per level up to ``4 * channels``.
    """

    def __init__(self, dim: int, patch: int, image_size: int, channels: int) -> None:
        super().__init__()
        self.levels = patch.bit_length() - 1  # log2(patch); the config checks patch is a power of 2
        self.grid = image_size // patch
        widths = [min(channels * 2 ** i, 4 * channels) for i in range(self.levels + 1)]  # full res .. grid
        # encoder of x_t: skip features at every scale (full res first)
        self.skips = nn.ModuleList([_conv(3, widths[0])] +
                                   [_conv(widths[i - 1], widths[i], stride=2) for i in range(1, self.levels + 1)])
        self.token_proj = nn.Conv2d(dim, widths[-1], 1)
        # decoder, coarse to fine: fuse with the skip at the same scale, then upsample
        self.fuse = nn.ModuleList(_conv(2 * widths[i], widths[i]) for i in range(self.levels, -1, -1))
        self.up = nn.ModuleList(nn.Conv2d(widths[i], widths[i - 1], 1) for i in range(self.levels, 0, -1))

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape  # (B, N, dim), N = grid * grid
        feats = []
        h = image * 2.0 - 1.0
        for conv in self.skips:
            h = conv(h)
            feats.append(h)  # (B, C_i, S / 2^i, S / 2^i)
        x = self.token_proj(tokens.transpose(1, 2).reshape(b, d, self.grid, self.grid))  # (B, C_L, g, g)
        for j, fuse in enumerate(self.fuse):
            x = fuse(torch.cat([x, feats[self.levels - j]], 1))
            if j < self.levels:
                x = self.up[j](F.interpolate(x, scale_factor=2, mode="nearest"))
        return x  # (B, C_0, S, S)


class FDM(nn.Module):
    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        n, p = int(config.target_tokens), int(config.target_token_dim)
        self.patch, self.image_size = config.patch_size, config.image_size
        self.in_proj = nn.Linear(p, config.dim)
        self.pos = nn.Parameter(torch.randn(1, n, config.dim) * 0.02)
        self.action_proj = nn.Linear(config.code_dim, config.dim)
        self.action_pos = nn.Parameter(torch.randn(1, config.tokens, config.dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(config.dim, config.heads) for _ in range(config.fdm_depth))
        self.norm = nn.LayerNorm(config.dim)
        self.decoder = None
        if config.fdm_decoder == "conv":
            self.decoder = ConvDecoder(config.dim, config.patch_size, config.image_size, config.fdm_channels)
            self.out = nn.Conv2d(config.fdm_channels, 3, 3, 1, 1)  # per-pixel residual
        else:
            self.out = nn.Linear(config.dim, p)  # per-patch residual
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, current: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """current (B, N, P) tokens of x_t, action (B, tokens, code_dim) -> predicted (B, N, P) of x_{t+H}."""
        x = self.in_proj(current) + self.pos
        ctx = self.action_proj(action) + self.action_pos
        for blk in self.blocks:
            x = blk(x, ctx)
        x = self.norm(x)  # (B, N, dim)
        if self.decoder is None:
            return current + self.out(x)
        image = unpatchify(current, self.patch, self.image_size)  # (B, 3, S, S)
        return current + patchify(self.out(self.decoder(x, image)), self.patch)
