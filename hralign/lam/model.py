"""The latent action model: IDM -> quantiser -> FDM (LAPA's LAQ; Genie's latent action model).

``LatentActionModel.forward`` takes a batch of frame pairs (x_t, x_{t+H}) and returns the training
loss with the figures the trainer logs (reconstruction error, the copy-x_t baseline, codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.fdm import FDM
from hralign.lam.idm import build_idm
from hralign.lam.layers import patchify, unpatchify
from hralign.lam.quantizer import QuantOut, VectorQuantizer


@dataclass
class LAMOutput:
    loss: torch.Tensor  # scalar: reconstruction MSE + quantiser loss
    recon_mse: torch.Tensor  # scalar, detached: MSE of the FDM's prediction of x_{t+H}
    copy_mse: torch.Tensor  # scalar, detached: MSE of predicting x_{t+H} = x_t
    codes: torch.Tensor  # (B, tokens) int64
    latents: torch.Tensor  # (B, tokens, code_dim) continuous IDM output
    prediction: torch.Tensor  # (B, N, P) predicted target tokens of x_{t+H}


def to_frame_pairs(images, image_size: int, what: str = "frames") -> torch.Tensor:
    """Check and convert frame pairs to float (B, 2, 3, S, S) in [0, 1].

    Accepts uint8 (B, 2, H, W, 3) arrays/tensors (as stored in pairs files) or float tensors
    (B, 2, 3, H, W) in [0, 1]. Frames must already be ``image_size`` square: a LAM never resizes
    silently (its latents would mean something else).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise HRAlignError(f"{what}: expected a uint8 array (B, 2, H, W, 3) or float tensor (B, 2, 3, H, W), "
                           f"got {type(images).__name__}")
    shape = list(images.shape)
    if images.dtype == torch.uint8:
        if images.ndim != 5 or shape[1] != 2 or shape[-1] != 3:
            raise HRAlignError(f"{what}: uint8 frame pairs should have shape (B, 2, H, W, 3) but have {shape}")
        hw = shape[2:4]
        x = images.permute(0, 1, 4, 2, 3).float() / 255.0
    elif images.is_floating_point():
        if images.ndim != 5 or shape[1] != 2 or shape[2] != 3:
            raise HRAlignError(f"{what}: float frame pairs should have shape (B, 2, 3, H, W) but have {shape}")
        hw = shape[3:5]
        if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
            raise HRAlignError(f"{what}: float frames should be in [0, 1] but range over "
                               f"[{float(images.min()):.3g}, {float(images.max()):.3g}]")
        x = images.float()
    else:
        raise HRAlignError(f"{what}: dtype {images.dtype} not supported; expected uint8 or float in [0, 1]")
    if hw != [image_size, image_size]:
        raise HRAlignError(f"{what}: frames are {hw[0]}x{hw[1]} but the LAM was trained on {image_size}x{image_size}; "
                           "resample the frames or train a LAM at this size")
    return x


class LatentActionModel(nn.Module):
    """IDM + vector quantiser + FDM. Build with a :class:`LAMConfig` (``target_tokens`` set)."""

    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        if config.target_tokens is None or config.target_token_dim is None:
            raise HRAlignError("LAM config: `target_tokens`/`target_token_dim` are unset; "
                               "build feature-target LAMs with hralign.lam.train.build_lam")
        self.config = config
        self.idm = build_idm(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.quantizer, config.commitment,
                                         config.latent_noise)
        self.fdm = FDM(config)

    # -- inputs --------------------------------------------------------------------------------
    def preprocess(self, images) -> torch.Tensor:
        """Frame pairs (see :func:`to_frame_pairs`) -> the IDM's input, float (B, 2, 3, S, S) in [-1, 1]."""
        x = to_frame_pairs(images, self.config.image_size)
        return (x.to(self.quantizer.codebook.device) - 0.5) / 0.5

    def pixel_tokens(self, frames01: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> patch tokens (B, N, 3*p*p): the FDM's pixel target."""
        return patchify(frames01, self.config.patch_size)

    # -- inference -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed pairs -> continuous latent action tokens (B, tokens, code_dim)."""
        return self.idm(x)

    def quantize(self, z: torch.Tensor) -> QuantOut:
        return self.quantizer(z)

    @torch.no_grad()
    def codes(self, images) -> torch.Tensor:
        """Frame pairs -> latent action codes (B, tokens) int64."""
        return self.quantizer.lookup(self.encode(self.preprocess(images)))

    # -- training ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, current: torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> LAMOutput:
        """x: preprocessed pairs (B, 2, 3, S, S) in [-1, 1]. ``current``/``target``: FDM tokens of x_t
        and x_{t+H} (B, N, P); default (pixel target) the patches of the two frames in [0, 1]."""
        if current is None or target is None:
            if self.config.target != "pixels":
                raise HRAlignError("feature-target LAM: pass the target encoder's tokens as `current` and `target`")
            x01 = x * 0.5 + 0.5
            current, target = self.pixel_tokens(x01[:, 0]), self.pixel_tokens(x01[:, 1])
        z = self.encode(x)
        q = self.quantize(z)
        pred = self.fdm(current, q.quantized)
        recon = F.mse_loss(pred, target)
        with torch.no_grad():
            copy = F.mse_loss(current, target)
        return LAMOutput(self._recon_loss(pred, target, recon, current) + q.loss, recon.detach(), copy, q.codes, z,
                         pred)

    def forward_unrolled(self, x: torch.Tensor) -> LAMOutput:
        """Training loss of an FDM unrolled over K steps, as a rollout uses it (pixel targets).

        x: preprocessed sequences (B, K+1, 3, S, S) in [-1, 1], frames ``gap`` apart. The IDM reads
        every real pair (x_k, x_{k+1}); the FDM starts from the real x_0 and is then fed its own
        prediction, clipped to [0, 1] as :func:`hralign.lam.rollout.rollout` does, so it learns to
        continue from its own (blurrier) frames instead of only from real ones (training on the
        model's own outputs against compounding error, as in scheduled sampling, Bengio et al. 2015).
        The loss is the mean over the K steps; ``recon_mse``, ``copy_mse`` and ``prediction`` are
        those of step 1, comparable with :meth:`forward`; ``codes``/``latents`` cover all B*K pairs.
        """
        if self.config.target != "pixels":
            raise HRAlignError("unrolled FDM training feeds predicted frames back; it needs target='pixels'")
        b, k = x.shape[0], x.shape[1] - 1
        pairs = torch.stack([x[:, :-1], x[:, 1:]], 2).reshape(b * k, 2, *x.shape[2:])  # (B*K, 2, 3, S, S)
        z = self.encode(pairs)
        q = self.quantize(z)
        actions = q.quantized.reshape(b, k, *q.quantized.shape[1:])  # (B, K, tokens, code_dim)
        frames = self.pixel_tokens(x * 0.5 + 0.5)  # (B, K+1, N, P)
        current, loss, first = frames[:, 0], 0.0, None
        for s in range(k):
            pred = self.fdm(current, actions[:, s])
            mse = F.mse_loss(pred, frames[:, s + 1])
            loss = loss + self._recon_loss(pred, frames[:, s + 1], mse, frames[:, s])
            if first is None:
                first = (pred, mse)
            current = pred.clamp(0, 1)
        with torch.no_grad():
            copy = F.mse_loss(frames[:, 0], frames[:, 1])
        return LAMOutput(loss / k + q.loss, first[1].detach(), copy, q.codes, z, first[0])

    def _recon_loss(self, pred: torch.Tensor, target: torch.Tensor, mse: torch.Tensor,
                    current: torch.Tensor) -> torch.Tensor:
        """The FDM's loss for one prediction: its MSE (motion-weighted when asked) plus, for pixels, the
        weighted edge term. ``current``: the real tokens of x_t the prediction starts from."""
        loss = self.motion_loss(pred, target, current) if self.config.motion_weight else mse
        if self.config.edge_weight:
            return loss + self.config.edge_weight * self.edge_loss(pred, target)
        return loss

    def motion_loss(self, pred: torch.Tensor, target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Squared error weighted by the frame difference, ``mean(w * (pred - target)^2)`` with
        ``w = 1 + W * d / mean(d)``, ``d = |target - current|`` per value and sample.

        Most pixels of a manipulation frame do not move, so plain MSE is won by copying x_t and the
        latent learns little about the arm (the corpus LAM explained ~3% of the change); weighting
        the moving pixels makes what moved the larger part of the loss. ``mean(d)`` per sample keeps
        the weights' scale the same for small and large motions (1 + W on average).
        """
        d = (target - current).abs()
        w = 1.0 + self.config.motion_weight * d / d.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)
        return (w * (pred - target).pow(2)).mean()

    def edge_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE between the horizontal and vertical finite differences of two pixel-token frames (B, N, P).

        Plain MSE is minimised by a blur when the future is uncertain; matching image gradients
        rewards sharp edges where the target has them (the gradient-difference loss of Mathieu et
        al., 2016, "Deep multi-scale video prediction beyond mean square error", with exponent 2).
        """
        p, s = self.config.patch_size, self.config.image_size
        a, b = unpatchify(pred, p, s), unpatchify(target, p, s)  # (B, 3, S, S)
        dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
        dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
        return dx.pow(2).mean() + dy.pow(2).mean()


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for pixel values in [0, peak]."""
    return float(10.0 * np.log10(peak ** 2 / max(float(mse), 1e-12)))
