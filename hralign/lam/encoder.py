"""``lam:DIR``: a trained LAM's inverse dynamics model behind the hralign Encoder contract.

The design card lists the LAM among the frozen encoders that get adapters (HR-Align; LAPA/IGOR
latent actions). Unlike image encoders its input is a *frame pair* (x_t, x_{t+H}):

- ``forward(images)``: uint8 (B, 2, H, W, 3) or float (B, 2, 3, H, W) in [0, 1] -> the continuous
  latent action (B, tokens * code_dim), before quantisation;
- ``codes(images)``: the latent action codes (B, tokens) int64 (nearest codebook entries);
- staged forward over the IDM's stages (transformer: ``patch_embed``, ``blocks.i``, ``head``;
  conv: ``convs.i``, ``head``); ``preprocess`` gives the input of the first stage (B, 2, 3, S, S).

Frames must be the LAM's training size (never resized: the latent's meaning depends on the pixel
scale of the motion). Module names are timm-like (``idm.blocks.0.spatial.qkv``, ``.proj``,
``.mlp.fc1``/``fc2``; conv: ``idm.convs.0.0``; head: ``idm.head.*``) so PEFT methods can target them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hralign.encoders.base import Encoder, Stage
from hralign.errors import HRAlignError
from hralign.lam.io import load_lam, read_lam_meta
from hralign.lam.model import to_frame_pairs

PREFIX = "lam:"


class LAMEncoder(Encoder):
    """The IDM (+ codebook, for :meth:`codes`) of a LAM directory, frozen like any encoder."""

    frame_pairs = True  # callers feed (x_t, x_{t+gap}) pairs, not single frames

    def __init__(self, directory: str | os.PathLike, image_size: int | None = None) -> None:
        d = Path(directory).expanduser().resolve()
        lam = load_lam(d)
        cfg = lam.config
        if image_size is not None and int(image_size) != cfg.image_size:
            raise HRAlignError(f"lam:{d}: image_size {image_size} requested but the LAM was trained on "
                               f"{cfg.image_size}x{cfg.image_size} frames (a LAM never resizes)")
        super().__init__(f"{PREFIX}{d}", cfg.latent_dim, cfg.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.lam_config = cfg
        self.gap = cfg.gap
        self.tokens = cfg.tokens
        self.code_dim = cfg.code_dim
        self.codebook_size = cfg.codebook_size
        self.idm = lam.idm
        self.codebook = nn.Parameter(lam.quantizer.codebook.detach().clone())
        self.pretrained_source = str(d)  # weights come from the LAM directory: no random-init warning
        self._spec.update({"lam_sha256": read_lam_meta(d).get("weights_sha256")})

    # ---------------------------------------------------------------- contract
    def stages(self) -> list[Stage]:
        names = self.idm.stage_names
        out: list[Stage] = []
        for i, name in enumerate(names):
            if name == "head":
                out.append((name, lambda x, i=i: self.idm._run(x, i, i + 1).flatten(1)))  # (B, tokens*code_dim)
            else:
                out.append((name, lambda x, i=i: self.idm._run(x, i, i + 1)))
        return out

    def backbone(self) -> nn.Module:
        return self.idm

    def stage_modules(self) -> dict[str, list[str]]:
        mods = {name: [f"idm.{name}"] for name in self.idm.stage_names}
        if "patch_embed" in mods:
            mods["patch_embed"] += ["idm.pos", "idm.time"]
        return mods

    def adapter_sites(self) -> dict[str, tuple[str, str, int]]:
        """Bottleneck placements: after the first / middle / last IDM stage before the head.

        Transformer stages output tokens (B, 2, N, dim) -> token adapters of width ``dim``; conv
        stages output maps (B, C, h, w) -> conv adapters of width C.
        """
        body = [n for n in self.idm.stage_names if n != "head"]
        if self.lam_config.idm == "transformer":
            width = {n: self.lam_config.dim for n in body}
            kind = "token"
        else:
            width = {n: int(self.idm.convs[int(n.split(".")[1])][0].out_channels) for n in body}
            kind = "conv"
        picks = {"early": body[0], "middle": body[len(body) // 2], "late": body[-1]}
        return {p: (s, kind, width[s]) for p, s in picks.items()}

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frame pairs uint8 (B, 2, H, W, 3) or float (B, 2, 3, H, W) in [0, 1] -> (B, 2, 3, S, S) in [-1, 1]."""
        x = to_frame_pairs(images, self.image_size, what="lam encoder input")
        return (x.to(self.codebook.device) - 0.5) / 0.5

    @torch.no_grad()
    def codes(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Latent action codes (B, tokens) int64 of frame pairs."""
        return latents_to_codes(self(images), self.codebook)


def latents_to_codes(latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Continuous latents (B, tokens*code_dim) -> nearest codes (B, tokens) against ``codebook`` (K, code_dim).

    Works for an adapted LAM encoder too (its forward gives adapted latents; the codebook is the
    frozen LAM's), which is how code agreement is measured before and after adaptation.
    """
    k, dim = codebook.shape
    if latents.ndim != 2 or latents.shape[1] % dim:
        raise HRAlignError(f"latents of shape {list(latents.shape)} do not split into tokens of {dim}")
    z = latents.reshape(latents.shape[0], -1, dim)
    d = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(1))  # (B, T, K)
    return d.argmin(-1)


def find_codebook(encoder: nn.Module) -> torch.Tensor:
    """The LAM codebook inside a (possibly adapted / wrapped) LAM encoder."""
    for name, p in encoder.named_parameters():
        if name == "codebook" or name.endswith(".codebook"):
            return p.detach()
    raise HRAlignError(f"{type(encoder).__name__}: not a LAM encoder (no codebook); load one with 'lam:DIR'")


def _factory(rest: str, image_size: int | None) -> LAMEncoder:
    if not rest:
        raise HRAlignError("encoder 'lam:' needs a LAM directory, e.g. lam:runs/lam")
    return LAMEncoder(rest, image_size)


def lam_encoder_info(encoder: Any) -> dict[str, Any]:
    """gap / tokens / codebook size of a LAM encoder (for callers that build frame pairs)."""
    cfg = getattr(encoder, "lam_config", None)
    if cfg is None:
        raise HRAlignError(f"{type(encoder).__name__}: not a LAM encoder")
    return {"gap": cfg.gap, "tokens": cfg.tokens, "code_dim": cfg.code_dim, "codebook_size": cfg.codebook_size,
            "image_size": cfg.image_size}
