"""Inverse dynamics models: (x_t, x_{t+H}) -> continuous latent action tokens (B, tokens, code_dim).

Both variants expose the staged forward of the Encoder contract (``stage_names``,
``forward_until``, ``forward_from``) so frozen stages below an adapter can be cached.

- :class:`TransformerIDM`: LAPA's LAQ encoder at small scale — patches of both frames, Genie-style
  spatio-temporal blocks, then the change between the two frames' tokens (LAPA quantises
  ``last - first``) pooled into ``tokens`` latent tokens by learned attention pooling.
- :class:`ConvIDM`: for small images (the 64 px demo) where 32 px patches would leave 4 tokens:
  a strided conv net over [x_t, x_{t+H}, x_{t+H} - x_t] and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

from hralign.lam.config import LAMConfig
from hralign.lam.layers import STBlock, patchify


class TokenPool(nn.Module):
    """Attention pooling of N tokens into ``tokens`` latent tokens: softmax(scores) over N, one
    learned score per output token (a Perceiver-style learned query), then a projection."""

    def __init__(self, dim: int, tokens: int, code_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, tokens)
        self.proj = nn.Linear(dim, code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (B, N, D)
        w = self.score(x).softmax(dim=1)  # (B, N, tokens)
        return self.proj(torch.einsum("bnk,bnd->bkd", w, x))  # (B, tokens, code_dim)


class StagedIDM(nn.Module):
    """The staged forward of the Encoder contract, from a subclass's ``stage_names`` and ``_run``."""

    stage_names: list[str]

    def _run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, 0, len(self.stage_names))

    def forward_until(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        return self._run(x, 0, self.stage_names.index(stage))

    def forward_from(self, h: torch.Tensor, stage: str) -> torch.Tensor:
        return self._run(h, self.stage_names.index(stage), len(self.stage_names))


class TransformerIDM(StagedIDM):
    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        self.config = config
        n = config.num_patches
        self.patch_embed = nn.Linear(3 * config.patch_size ** 2, config.dim)
        self.pos = nn.Parameter(torch.randn(1, 1, n, config.dim) * 0.02)
        self.time = nn.Parameter(torch.randn(1, 2, 1, config.dim) * 0.02)
        self.blocks = nn.ModuleList(STBlock(config.dim, config.heads) for _ in range(config.idm_depth))
        self.head = TokenPool(config.dim, config.tokens, config.code_dim)
        self.stage_names = ["patch_embed", *[f"blocks.{i}" for i in range(config.idm_depth)], "head"]

    def _run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        # private: stages [start, stop) on checked input
        for i in range(start, stop):
            name = self.stage_names[i]
            if name == "patch_embed":  # x: (B, 2, 3, S, S) -> (B, 2, N, D)
                x = self.patch_embed(patchify(x, self.config.patch_size)) + self.pos + self.time
            elif name == "head":  # LAPA: quantise the change between the frames' tokens
                x = self.head(x[:, 1] - x[:, 0])
            else:
                x = self.blocks[i - 1](x)
        return x


class ConvIDM(StagedIDM):
    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        self.config = config
        c = config.conv_channels
        layers, ch_in, size = [], 9, config.image_size
        while size > 4:  # stride-2 stages down to a 4x4 map (or smaller odd sizes)
            ch_out = min(c * 2 ** len(layers), 4 * c)
            layers.append(nn.Sequential(nn.Conv2d(ch_in, ch_out, 3, stride=2, padding=1),
                                        nn.GroupNorm(min(8, ch_out), ch_out), nn.GELU()))
            ch_in, size = ch_out, (size + 1) // 2
        self.convs = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(ch_in * size * size, 4 * c), nn.GELU(),
                                  nn.Linear(4 * c, config.tokens * config.code_dim))
        self.stage_names = [*[f"convs.{i}" for i in range(len(layers))], "head"]

    def _run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            if i == 0:  # (B, 2, 3, S, S) -> (B, 9, S, S): both frames and their difference
                x = torch.cat([x[:, 0], x[:, 1], x[:, 1] - x[:, 0]], dim=1)
            if self.stage_names[i] == "head":
                x = self.head(x).reshape(x.shape[0], self.config.tokens, self.config.code_dim)
            else:
                x = self.convs[i](x)
        return x


def build_idm(config: LAMConfig) -> nn.Module:
    return TransformerIDM(config) if config.idm == "transformer" else ConvIDM(config)
