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

import math

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


# -- objectives beyond the per-frame term (``--terms``; registry in hralign.align.terms) -------------
# No dependency of hralign provides soft-DTW or Sinkhorn (tslearn / POT / geomloss are not in
# setup.cfg); at T <= 32 frames and batch frame sets of a few hundred points both are a few lines of
# torch, differentiable by autograd, so they are written here rather than adding a dependency.


def _scaled(human_frames: torch.Tensor, adapted_frames: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both (B, T, D) in float, divided by the RMS norm of the frozen human frames (detached): costs
    are then relative squared errors as in :func:`frame_matching_loss`, whatever the feature scale."""
    if human_frames.shape != adapted_frames.shape or human_frames.ndim != 3:
        raise HRAlignError(f"{name} needs two (B, T, D) tensors of one shape; got "
                           f"{list(human_frames.shape)}, {list(adapted_frames.shape)}")
    h = human_frames.detach().float()
    scale = h.pow(2).sum(-1).mean().clamp_min(1e-12).sqrt()
    return h / scale, adapted_frames.float() / scale


def _sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (..., N, M) between rows of x (..., N, D) and y (..., M, D); no
    square root, so the gradient is defined at distance 0 (torch.cdist's is not)."""
    return (x.pow(2).sum(-1)[..., :, None] + y.pow(2).sum(-1)[..., None, :] - 2 * x @ y.transpose(-1, -2)).clamp_min(0)


def _soft_dtw(cost: torch.Tensor, gamma: float) -> torch.Tensor:
    """Soft-DTW value (Cuturi & Blondel 2017) of a batch of cost matrices (B, N, M): the soft-min
    (temperature ``gamma``) over monotone alignment paths of the summed cost. O(N M) python steps,
    each vectorised over B; autograd gives the gradient (the expected alignment)."""
    b, n, m = cost.shape
    inf = cost.new_full((b,), float("inf"))
    prev = [cost.new_zeros(b)] + [inf] * m  # row 0 of R: R[0, 0] = 0, R[0, j>0] = inf
    for i in range(1, n + 1):
        row = [inf]
        for j in range(1, m + 1):
            options = torch.stack([prev[j - 1], prev[j], row[j - 1]], dim=-1)
            row.append(cost[:, i - 1, j - 1] - gamma * torch.logsumexp(-options / gamma, dim=-1))
        prev = row
    return prev[m]


def soft_dtw_divergence(human_frames: torch.Tensor, adapted_frames: torch.Tensor, gamma: float = 0.1) -> torch.Tensor:
    """Soft-DTW divergence (Blondel et al. 2021) between each pair's adapted-robot and human frame
    sequences, mean over pairs, per frame.

    sdtw(a, h) - (sdtw(a, a) + sdtw(h, h)) / 2 on squared-distance costs relative to the human
    frames' energy: 0 when the sequences are identical, >= 0 otherwise (the Gaussian kernel of the
    cost is positive definite), and it lets frame t of the robot clip match a nearby human frame:
    the term for pairs that are task-matched but not frame-synchronised. ``gamma`` -> 0 is DTW.
    """
    h, a = _scaled(human_frames, adapted_frames, "soft_dtw_divergence")
    if not gamma > 0:
        raise HRAlignError(f"`gamma` of softdtw should be a positive number but the value passed is {gamma!r}")
    t = h.shape[1]
    xy = _soft_dtw(_sq_dist(a, h), gamma)
    xx = _soft_dtw(_sq_dist(a, a), gamma)
    yy = _soft_dtw(_sq_dist(h, h), gamma)
    return (xy - 0.5 * (xx + yy)).mean() / t


def _entropic_ot(x: torch.Tensor, y: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Entropic OT value between uniform point clouds x (N, D) and y (M, D), squared-Euclidean cost:
    the dual value <1/N, f> + <1/M, g> after ``iterations`` log-domain Sinkhorn updates."""
    cost = _sq_dist(x, y)
    log_a = cost.new_full((x.shape[0],), -math.log(x.shape[0]))
    log_b = cost.new_full((y.shape[0],), -math.log(y.shape[0]))
    f, g = cost.new_zeros(x.shape[0]), cost.new_zeros(y.shape[0])
    for _ in range(iterations):
        f = -epsilon * torch.logsumexp(log_b[None, :] + (g[None, :] - cost) / epsilon, dim=1)
        g = -epsilon * torch.logsumexp(log_a[:, None] + (f[:, None] - cost) / epsilon, dim=0)
    return f.mean() + g.mean()


def sinkhorn_divergence(human_frames: torch.Tensor, adapted_frames: torch.Tensor, epsilon: float = 0.05,
                        iterations: int = 50) -> torch.Tensor:
    """Debiased Sinkhorn divergence (Feydy et al. 2019) between the batch's adapted-robot frames and
    its human frames, each taken as a set of B*T points (pairing ignored: the distribution-level
    term, optimal transport as in EgoBridge).

    OT(a, h) - (OT(a, a) + OT(h, h)) / 2 with entropic OT at ``epsilon`` on squared distances
    relative to the human frames' energy: 0 for identical sets, positive otherwise.
    """
    h, a = _scaled(human_frames, adapted_frames, "sinkhorn_divergence")
    if not epsilon > 0:
        raise HRAlignError(f"`epsilon` of sinkhorn should be a positive number but the value passed is {epsilon!r}")
    h, a = h.flatten(0, 1), a.flatten(0, 1)
    return (_entropic_ot(a, h, epsilon, iterations)
            - 0.5 * (_entropic_ot(a, a, epsilon, iterations) + _entropic_ot(h, h, epsilon, iterations)))


def mmd_rbf(human_frames: torch.Tensor, adapted_frames: torch.Tensor,
            bandwidths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Squared MMD (biased V-statistic, >= 0, 0 for identical sets) between the batch's adapted-robot
    and human frame sets under a sum of RBF kernels; kernel k's squared bandwidth is
    ``bandwidths[k]`` times the median squared distance between human frames (detached), so the
    bandwidths follow the feature scale. The cheaper distribution-level term (no iterations)."""
    h, a = _scaled(human_frames, adapted_frames, "mmd_rbf")
    if not bandwidths or not all(b > 0 for b in bandwidths):
        raise HRAlignError(f"`bandwidths` of mmd should be positive numbers but the value passed is {list(bandwidths)!r}")
    h, a = h.flatten(0, 1), a.flatten(0, 1)
    d_hh = _sq_dist(h, h)
    off = d_hh[~torch.eye(len(h), dtype=torch.bool, device=h.device)]
    med = (off.median() if off.numel() else d_hh.new_ones(())).clamp_min(1e-12)

    def k(d2: torch.Tensor) -> torch.Tensor:
        return sum(torch.exp(-d2 / (b * med)) for b in bandwidths) / len(bandwidths)

    return k(_sq_dist(a, a)).mean() + k(d_hh).mean() - 2 * k(_sq_dist(a, h)).mean()
