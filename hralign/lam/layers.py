"""Transformer pieces of the LAM: attention, MLP, spatio-temporal and decoder blocks, patchify.

Hand-written rather than ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` on purpose:
the projections are plain ``nn.Linear`` modules named as in timm's ViT (``attn.qkv``,
``attn.proj``, ``mlp.fc1``, ``mlp.fc2``), so PEFT's LoRA / IA3 / LoHa / LoKr can target them by
name (PEFT cannot inject into ``nn.MultiheadAttention``'s fused in-projection). The layout follows
LAPA's LAQ / Genie's ST-transformer at small scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., C, S, S) -> (..., N, C*patch*patch) with N = (S/patch)^2, row-major patches."""
    *lead, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(*lead, c, gh, patch, gw, patch)
    nd = len(lead)
    perm = list(range(nd)) + [nd + 1, nd + 3, nd, nd + 2, nd + 4]  # (..., gh, gw, c, p, p)
    return x.permute(*perm).reshape(*lead, gh * gw, c * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: (..., N, C*p*p) -> (..., C, S, S)."""
    *lead, n, _ = tokens.shape
    g = size // patch
    x = tokens.reshape(*lead, g, g, channels, patch, patch)
    nd = len(lead)
    perm = list(range(nd)) + [nd + 2, nd, nd + 3, nd + 1, nd + 4]  # (..., c, gh, p, gw, p)
    return x.permute(*perm).reshape(*lead, channels, size, size)


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention."""

    def __init__(self, dim: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape  # (B, N, D)
        h = self.heads
        if self.cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, -1, h, d // h).transpose(1, 2) for t in (q, k, v))  # (B, h, N, D/h)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class STBlock(nn.Module):
    """Genie-style spatio-temporal block: spatial attention within each frame, causal temporal
    attention across frames at each patch position, then an MLP (pre-norm residuals)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.spatial = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.temporal = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape  # (B, T, N, D)
        s = x.reshape(b * t, n, d)
        s = s + self.spatial(self.norm1(s))
        x = s.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D)
        x = x + self.temporal(self.norm2(x), causal=True)
        x = x.reshape(b, n, t, d).transpose(1, 2)  # (B, T, N, D)
        return x + self.mlp(self.norm3(x))


class DecoderBlock(nn.Module):
    """FDM block: self-attention over x_t's tokens, cross-attention to the latent action tokens, MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads, cross=True)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross(self.norm2(x), context)
        return x + self.mlp(self.norm3(x))
