"""HR-Align's contrastive loss (docs/design.md, "HR-Align loss").

For M pairs with pooled, L2-normalised frozen human features h, frozen robot features r and
adapted robot features a, and S(x, y) = exp(x.y / tau)::

    L_h = -1/M sum_i log S(h_i, a_i) / (S(h_i, a_i) + S(h_i, r_i) + sum_{j!=i} S(h_i, a_j))
    L_a = -1/M sum_i log S(a_i, h_i) / (S(a_i, h_i) + S(a_i, r_i) + sum_{j!=i} S(a_i, h_j))
    L   = (L_h + L_a) / 2

The S(., r_i) term is HR-Align's point: the adapted robot feature must end up closer to its
human partner than the unadapted robot feature is. Written as cross-entropy over M (+1) logits,
which is the numerically stable form of the same expression.

``frame_matching_loss`` is an optional extra term (not HR-Align's): on frame-aligned pairs it
pulls each adapted robot frame feature onto its human partner's, which a policy reading per-frame
features needs and a clip-level contrastive loss does not ask for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hralign.errors import HRAlignError


def _one_side(query: torch.Tensor, keys: torch.Tensor, frozen: torch.Tensor | None, temperature: float,
              offset: int) -> torch.Tensor:
    """Cross-entropy of rows of ``query`` against all ``keys`` (+ its own frozen-robot negative).

    ``query`` (M_local, D) are this process's rows; ``keys`` (M_global, D) are every process's
    keys; the positive of local row i is global key ``offset + i``.
    """
    logits = query @ keys.T / temperature  # (M_local, M_global)
    if frozen is not None:
        neg = (query * frozen).sum(-1, keepdim=True) / temperature  # (M_local, 1): S(q_i, r_i)
        logits = torch.cat([logits, neg], dim=1)
    target = torch.arange(query.shape[0], device=query.device) + offset
    return F.cross_entropy(logits, target)


def hralign_loss(human: torch.Tensor, frozen_robot: torch.Tensor, adapted_robot: torch.Tensor,
                 temperature: float = 0.1, frozen_negative: bool = True, symmetric: bool = True,
                 gather=None) -> torch.Tensor:
    """HR-Align loss of one batch.

    Parameters
    ----------
    human, frozen_robot, adapted_robot : Tensor of shape (M, D)
        Pooled features of the frozen human branch, the frozen robot branch and the adapted
        robot branch; normalised here.
    temperature : float
        tau of S(x, y) = exp(x.y / tau); HR-Align uses 0.1.
    frozen_negative : bool
        Keep the S(., r_i) term (HR-Align); off gives plain symmetric InfoNCE.
    symmetric : bool
        Average L_h and L_a (HR-Align); off keeps L_h only.
    gather : callable, optional
        ``gather(x) -> (x_global, offset)`` concatenating every process's rows with gradients
        (``torch.distributed.nn.functional.all_gather``); negatives then come from the global
        batch and the loss equals the single-process loss on that batch.
    """
    if not (human.shape == frozen_robot.shape == adapted_robot.shape) or human.ndim != 2:
        raise HRAlignError(f"hralign_loss needs three (M, D) tensors of one shape; got {list(human.shape)}, "
                           f"{list(frozen_robot.shape)}, {list(adapted_robot.shape)}")
    if temperature <= 0:
        raise HRAlignError(f"`temperature` should be positive but the value passed is {temperature}")
    h = F.normalize(human.float(), dim=-1)
    r = F.normalize(frozen_robot.float(), dim=-1)
    a = F.normalize(adapted_robot.float(), dim=-1)
    if gather is None:
        a_all, h_all, offset = a, h, 0
    else:
        a_all, offset = gather(a)
        h_all, _ = gather(h)
    neg = r if frozen_negative else None
    loss_h = _one_side(h, a_all, neg, temperature, offset)
    if not symmetric:
        return loss_h
    loss_a = _one_side(a, h_all, neg, temperature, offset)
    return 0.5 * (loss_h + loss_a)


def frame_matching_loss(human_frames: torch.Tensor, adapted_frames: torch.Tensor) -> torch.Tensor:
    """Relative per-frame feature error: sum ||a_t - h_t||^2 / sum ||h_t||^2 over all (B, T) frames.

    ``human_frames`` (B, T, D) are frozen-branch features of the human frames at the same relative
    positions as ``adapted_frames`` (the sampler keeps pairs aligned). The target is frozen, so the
    term cannot collapse; dividing by the target's energy makes its weight independent of the
    encoder's feature scale. Unnormalised on purpose: a BC policy standardises raw features, so
    their scale has to match too, not only their direction.
    """
    if human_frames.shape != adapted_frames.shape or human_frames.ndim != 3:
        raise HRAlignError(f"frame_matching_loss needs two (B, T, D) tensors of one shape; got "
                           f"{list(human_frames.shape)}, {list(adapted_frames.shape)}")
    h = human_frames.detach().float()
    return (adapted_frames.float() - h).pow(2).sum() / h.pow(2).sum().clamp_min(1e-12)
