"""Vector quantiser of latent actions, with dead-code restart.

Two ways to pass gradients through the nearest-code lookup:

- ``nsvq``: noise substitution (Vali & Bäckström, 2022, "NSVQ: Noise Substitution in Vector
  Quantization", used by LAPA): ``q = z + ||z - c|| / ||n|| * n`` with ``n ~ N(0, I)``. The encoder
  and the chosen code both get gradients; no auxiliary loss.
- ``ste``: straight-through estimator with codebook and commitment losses (van den Oord et al.,
  2017, VQ-VAE): ``q = z + sg(c - z)``, ``loss = ||sg(z) - c||^2 + beta ||z - sg(c)||^2``.

``none`` bypasses quantisation (continuous latent actions, as LAOM, Nikulin et al. 2025, found to
carry more action): the FDM reads ``z`` (plus Gaussian noise of std ``noise`` while training, a
bottleneck in place of the codebook). The codebook still learns, by its VQ-VAE codebook loss
``||sg(z) - c||^2`` alone (online k-means that sends no gradient to the encoder), so labels,
perplexity and code NMI keep meaning "the nearest of K clusters of latents".

Codebook collapse (one code used, reported by LAPA's users) is fought twice: the codebook is
initialised from the first batch of encoder outputs (as vector-quantize-pytorch's ``kmeans_init``
does, without the k-means), and :meth:`VectorQuantizer.restart_dead_codes` replaces codes that got
less than a threshold share of the recent assignments with recent encoder outputs (Jukebox /
SoundStream style; LAPA's ``replace_unused_codebooks`` copies live codes instead, which we fall
back to when no encoder output has been seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantOut:
    quantized: torch.Tensor  # (B, T, D) what the FDM sees
    codes: torch.Tensor  # (B, T) int64
    loss: torch.Tensor  # scalar auxiliary loss (0 for nsvq)
    hard: torch.Tensor  # (B, T, D) the chosen codebook vectors


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code histogram: 1 = collapse, ``codebook_size`` = uniform use."""
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()
    p = counts / counts.sum().clamp(min=1)
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return float(ent.exp())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation of (B, T, D) latents against one shared (K, D) codebook.

    Parameters
    ----------
    codebook_size : int
        K, number of codes.
    dim : int
        D, size of each code.
    mode : {"nsvq", "ste", "none"}
        Gradient estimator, or no quantisation (see module docstring).
    commitment : float
        beta of the VQ-VAE commitment loss (``ste`` only).
    noise : float
        Std of the training noise on continuous latents (``none`` only).
    """

    def __init__(self, codebook_size: int, dim: int, mode: str = "nsvq", commitment: float = 0.25,
                 noise: float = 0.0) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.mode = mode
        self.commitment = commitment
        self.noise = noise
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        # Assignments per code since the last restart; persistent so --resume keeps the window.
        self.register_buffer("usage", torch.zeros(codebook_size, dtype=torch.float64))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._recent: torch.Tensor | None = None  # last training batch of latents (N, D), detached
        # Under several processes (hralign.train): gather(x) -> (rows of every process, offset of ours).
        # Codebook init, usage, restarts and NSVQ noise then see the global batch, as one process does.
        self.gather: Callable[[torch.Tensor], tuple[torch.Tensor, int]] | None = None

    def _global(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        return (x, 0) if self.gather is None else self.gather(x)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code index of each latent: (B, T, D) -> (B, T) int64."""
        flat = z.reshape(-1, self.dim)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(1)[None, :])  # (N, K) squared distances
        return d.argmin(1).reshape(z.shape[:-1])

    def forward(self, z: torch.Tensor) -> QuantOut:
        if self.training and not bool(self.initialized):
            self._init_from(self._global(z.detach())[0].reshape(-1, self.dim))
        codes = self.lookup(z)
        hard = F.embedding(codes, self.codebook)  # (B, T, D)
        zero = z.new_zeros(())
        if not self.training:
            return QuantOut(z if self.mode == "none" else hard, codes, zero, hard)
        with torch.no_grad():
            every_z, offset = self._global(z.detach())  # (B_global, T, D)
            every_code = self._global(codes)[0]
            self.usage += torch.bincount(every_code.reshape(-1), minlength=self.codebook_size).to(self.usage.dtype)
            self._recent = every_z.reshape(-1, self.dim)
        if self.mode == "nsvq":
            noise = torch.randn_like(every_z)[offset:offset + z.shape[0]]  # the global batch's draw, our rows
            err = (z - hard).norm(dim=-1, keepdim=True)
            q = z + err / noise.norm(dim=-1, keepdim=True).clamp(min=1e-12) * noise
            return QuantOut(q, codes, zero, hard)
        if self.mode == "none":
            q = z + self.noise * torch.randn_like(z) if self.noise else z
            return QuantOut(q, codes, F.mse_loss(hard, z.detach()), hard)
        loss = F.mse_loss(hard, z.detach()) + self.commitment * F.mse_loss(z, hard.detach())
        return QuantOut(z + (hard - z).detach(), codes, loss, hard)

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        idx = torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)
        self.codebook.copy_(flat[idx] + 1e-3 * torch.randn_like(flat[idx]))
        self.initialized.fill_(True)

    @torch.no_grad()
    def dead_codes(self, threshold: float) -> torch.Tensor:
        """Indices of codes that got less than ``threshold`` of their uniform share since the last reset."""
        total = self.usage.sum()
        if total <= 0:
            return torch.zeros(0, dtype=torch.long, device=self.usage.device)
        share = self.usage / total
        return torch.nonzero(share < threshold / self.codebook_size).flatten()

    @torch.no_grad()
    def restart_dead_codes(self, threshold: float) -> int:
        """Move dead codes onto recent encoder outputs; reset the usage window. Returns how many moved."""
        dead = self.dead_codes(threshold)
        n = int(dead.numel())
        if n:
            if self._recent is not None and self._recent.shape[0] > 0:
                pool = self._recent
            else:  # LAPA's fallback: copies of live codes
                live = torch.ones(self.codebook_size, dtype=torch.bool, device=self.codebook.device)
                live[dead] = False
                pool = self.codebook[live] if live.any() else self.codebook
            idx = torch.randint(0, pool.shape[0], (n,), device=pool.device)
            scale = pool.std().clamp(min=1e-6) * 1e-2
            self.codebook[dead] = pool[idx] + scale * torch.randn(n, self.dim, device=pool.device)
        self.usage.zero_()
        return n
