"""The LAM's forward dynamics model as a world model: roll latent actions forward, autoregressively.

IGOR (Chen et al., 2024, "IGOR: Image-GOal Representations") pairs its latent action model with a
world model that renders the future given latent actions; Genie (Bruce et al., 2024) plays its
latent actions frame after frame the same way. hralign's FDM already predicts the pixels of
``x_{t+gap}`` from ``x_t`` and a latent action, so a rollout is: start frame -> FDM(action 0) ->
feed the prediction back -> FDM(action 1) -> ... Each step spans ``gap`` frames of the video the
LAM was trained on. Batched: B start frames, each with its own sequence of S actions.

Actions are codebook indices ``(B, S, tokens)`` (what ``hralign lam label`` writes) or continuous
IDM latents ``(B, S, tokens * code_dim)``; continuous latents are snapped to their nearest codes
by default, since the FDM was trained on quantised actions (LAPA's LAQ decoder).

Only pixel-target LAMs render frames; a feature-target LAM (UniVLA-style) can still be rolled
forward in its token space with :func:`rollout_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.lam.layers import unpatchify
from hralign.lam.model import LatentActionModel, to_frame_pairs


@dataclass
class Rollout:
    """Result of :func:`rollout`. ``frames[:, 0]`` is the start frame, ``frames[:, s]`` after s actions."""

    frames: torch.Tensor  # (B, S+1, 3, H, W) float in [0, 1]
    codes: torch.Tensor  # (B, S, tokens) int64: the codes applied (nearest codes of continuous latents)

    def uint8(self) -> np.ndarray:
        """Frames as uint8 (B, S+1, H, W, 3), as stored in pairs files and written to GIFs."""
        return (self.frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()


def start_frames(images, image_size: int, what: str = "start frames") -> torch.Tensor:
    """Check and convert single frames to float (B, 3, S, S) in [0, 1].

    Accepts uint8 (B, H, W, 3) (as stored) or float (B, 3, H, W) in [0, 1]; frames must already be
    the LAM's ``image_size`` (a LAM never resizes: its latents would mean something else).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = list(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise HRAlignError(f"{what}: expected uint8 (B, H, W, 3) or float (B, 3, H, W) frames, got {shape}")
    # reuse the LAM's own pair check (dtype, range, layout, size) on a pair of identical frames
    pair = images[:, None].expand(-1, 2, *images.shape[1:])
    return to_frame_pairs(pair, image_size, what)[:, 0].contiguous()


def action_vectors(model: LatentActionModel, actions, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes or continuous latents -> (FDM action input (B, S, tokens, code_dim), codes (B, S, tokens)).

    ``actions``: int codes (B, S, tokens) or (S, tokens); or float latents (B, S, tokens*code_dim),
    (B, S, tokens, code_dim), or without the batch axis. ``quantize=False`` feeds continuous latents
    to the FDM as they are (it was trained on NSVQ's noisy substitutes of codes, so they are close
    to its training inputs when the IDM is confident).
    """
    cfg = model.config
    codebook = model.quantizer.codebook.detach()
    a = torch.as_tensor(np.asarray(actions)) if not isinstance(actions, torch.Tensor) else actions
    if not a.is_floating_point():
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[-1] != cfg.tokens:
            raise HRAlignError(f"latent action codes should have shape (B, steps, {cfg.tokens}) but have {list(a.shape)}")
        a = a.long().to(codebook.device)
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= cfg.codebook_size):
            raise HRAlignError(f"latent action codes range over {int(a.min())}..{int(a.max())} but the LAM's "
                               f"codebook has {cfg.codebook_size} entries (0..{cfg.codebook_size - 1})")
        return codebook[a], a
    a = a.float().to(codebook.device)
    if a.ndim >= 1 and a.shape[-1] == cfg.latent_dim and a.ndim in (2, 3):
        a = a.reshape(*a.shape[:-1], cfg.tokens, cfg.code_dim)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or tuple(a.shape[-2:]) != (cfg.tokens, cfg.code_dim):
        raise HRAlignError(f"continuous latent actions should have shape (B, steps, {cfg.latent_dim}) or "
                           f"(B, steps, {cfg.tokens}, {cfg.code_dim}) but have {list(a.shape)}")
    codes = model.quantizer.lookup(a)
    return (codebook[codes] if quantize else a), codes


@torch.no_grad()
def rollout_tokens(model: LatentActionModel, current: torch.Tensor, actions: torch.Tensor,
                   clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """FDM tokens of the start (B, N, P) + action vectors (B, S, tokens, code_dim) -> (B, S+1, N, P).

    Private-ish guts of :func:`rollout` (inputs assumed checked): every step feeds the previous
    prediction back; ``clamp`` keeps predicted pixels inside the range the FDM was trained on.
    """
    out = [current]
    x = current
    for s in range(actions.shape[1]):
        x = model.fdm(x, actions[:, s])
        if clamp is not None:
            x = x.clamp(*clamp)
        out.append(x)
    return torch.stack(out, 1)


@torch.no_grad()
def rollout(model: LatentActionModel, start, actions, quantize: bool = True, clamp: bool = True) -> Rollout:
    """Render a sequence of latent actions from start frames through the LAM's FDM.

    Parameters
    ----------
    model : LatentActionModel
        A pixel-target LAM (``hralign.lam.load_lam``).
    start : uint8 array (B, H, W, 3) or float tensor (B, 3, H, W) in [0, 1]
        One start frame per rollout, at the LAM's image size.
    actions : codes (B, S, tokens) int, or continuous latents (B, S, tokens*code_dim) float
        One latent action per step (a batch axis of 1 is broadcast over the start frames). Each
        step advances ``model.config.gap`` frames.
    quantize : bool
        Snap continuous latents to their nearest codes (the FDM was trained on codes).
    clamp : bool
        Clip each predicted frame to [0, 1] before feeding it back.
    """
    if model.config.target != "pixels":
        raise HRAlignError(f"rollout renders frames with a pixel-target LAM; this LAM rebuilds "
                           f"{model.config.target_encoder!r} features (use rollout_tokens for its token space)")
    model.eval()
    x0 = start_frames(start, model.config.image_size).to(model.quantizer.codebook.device)
    vec, codes = action_vectors(model, actions, quantize)
    b = x0.shape[0]
    if vec.shape[0] == 1 and b > 1:
        vec, codes = vec.expand(b, *vec.shape[1:]), codes.expand(b, *codes.shape[1:])
    if vec.shape[0] != b:
        raise HRAlignError(f"{b} start frames but {vec.shape[0]} action sequences; give one sequence per start frame "
                           "(or one for all)")
    tokens = rollout_tokens(model, model.pixel_tokens(x0), vec, (0.0, 1.0) if clamp else None)
    p, s = model.config.patch_size, model.config.image_size
    return Rollout(unpatchify(tokens, p, s).clamp(0, 1), codes)


@torch.no_grad()
def infer_actions(model: LatentActionModel, frames) -> tuple[torch.Tensor, torch.Tensor]:
    """IDM latent actions of consecutive frames: uint8 (T, H, W, 3) or float (T, 3, H, W) ->
    (codes (T-1, tokens), continuous latents (T-1, tokens*code_dim)), one per (frames[i], frames[i+1]).

    Pass frames ``gap`` apart (e.g. ``clip[::gap]``) so each action is the change the LAM learnt.
    """
    x = start_frames(frames, model.config.image_size, "frames")
    if x.shape[0] < 2:
        raise HRAlignError(f"frames: need at least 2 frames to infer a latent action, got {x.shape[0]}")
    pairs = torch.stack([x[:-1], x[1:]], 1).to(model.quantizer.codebook.device)  # (T-1, 2, 3, S, S)
    z = model.encode((pairs - 0.5) / 0.5)  # (T-1, tokens, code_dim), the IDM's input scaling
    return model.quantizer.lookup(z), z.reshape(z.shape[0], -1)
