"""Robot action heads: the last layer, its loss and its decoding, fitted to training-set statistics.

* ``bc`` - R3M's behaviour cloning (Nair et al., 2022): linear output, MSE on standardised actions.
* ``continuous`` - GR-1 (Wu et al., 2023): smooth-L1 on the (standardised) arm dims and BCE on
  the gripper dims; the gripper decodes to 0/1.
* ``binned`` - LAPA (Ye et al., 2024) / RT-2 style: each dim discretised into ``num_bins`` bins whose
  edges are training-set quantiles, cross-entropy per dim, decoded to the bin centre (the mean of
  the training values in that bin).

Every head is ``fit(train_actions)`` once (statistics become buffers, saved with the weights), then
``forward(h) -> raw``, ``loss(raw, target) -> (loss, logs)``, ``decode(raw) -> actions [B, A]``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from hralign.errors import HRAlignError

# (sum over counted elements, their count) -> mean; hralign.train.distributed.MaskedMean
MaskedMean = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _elementwise_mean(per: torch.Tensor, mean: MaskedMean) -> torch.Tensor:
    return mean(per.sum(), per.new_tensor(float(per.numel())))


class ActionHead(nn.Module):
    """Base: a linear output on the hidden state plus fitted statistics."""

    def __init__(self, in_dim: int, action_dim: int, out_dim: int) -> None:
        super().__init__()
        self.action_dim = int(action_dim)
        self.out = nn.Linear(in_dim, out_dim)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)

    def fit(self, actions: torch.Tensor) -> "ActionHead":
        raise NotImplementedError

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or actions.shape[0] == 0:
            raise HRAlignError(f"actions: expected a non-empty [N, {self.action_dim}] array, got {list(actions.shape)}")
        if not torch.isfinite(actions).all():
            raise HRAlignError("actions: contain NaN or infinite values")
        return actions.float()


class MSEHead(ActionHead):
    """R3M: MSE on actions standardised with training mean/std (LeRobot's MEAN_STD for actions)."""

    def __init__(self, in_dim: int, action_dim: int, **_: object) -> None:
        super().__init__(in_dim, action_dim, action_dim)
        self.register_buffer("mean", torch.zeros(action_dim))
        self.register_buffer("std", torch.ones(action_dim))

    def fit(self, actions: torch.Tensor) -> "MSEHead":
        a = self._check_actions(actions)
        self.mean.copy_(a.mean(0))
        self.std.copy_(a.std(0, unbiased=False).clamp_min(1e-6))
        self.fitted.fill_(True)
        return self

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.mse_loss(raw, (target - self.mean) / self.std)
        return loss, {"mse": float(loss.detach())}

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return raw * self.std + self.mean


class ContinuousHead(ActionHead):
    """GR-1: smooth-L1 on standardised arm dims + BCE-with-logits on gripper dims (targets in [0, 1])."""

    def __init__(self, in_dim: int, action_dim: int, gripper_dims: list[int] | None = None, **_: object) -> None:
        super().__init__(in_dim, action_dim, action_dim)
        grip = sorted(set(gripper_dims or []))
        if any(not 0 <= g < action_dim for g in grip):
            raise HRAlignError(f"`gripper_dims` {grip} outside 0..{action_dim - 1}")
        mask = torch.zeros(action_dim, dtype=torch.bool)
        mask[grip] = True
        self.register_buffer("gripper_mask", mask)
        self.register_buffer("mean", torch.zeros(action_dim))
        self.register_buffer("std", torch.ones(action_dim))

    def fit(self, actions: torch.Tensor) -> "ContinuousHead":
        a = self._check_actions(actions)
        g = self.gripper_mask
        if g.any():
            grip = a[:, g]
            if grip.min() < 0 or grip.max() > 1:
                dims = torch.nonzero(g).flatten().tolist()
                raise HRAlignError(f"actions: gripper dims {dims} hold values in [{float(grip.min()):.3g}, "
                                   f"{float(grip.max()):.3g}], expected [0, 1] for BCE; pass --gripper-dims none "
                                   "or the right dims")
        mean, std = a.mean(0), a.std(0, unbiased=False).clamp_min(1e-6)
        self.mean.copy_(torch.where(g, torch.zeros_like(mean), mean))
        self.std.copy_(torch.where(g, torch.ones_like(std), std))
        self.fitted.fill_(True)
        return self

    def loss(self, raw: torch.Tensor, target: torch.Tensor,
             mean: MaskedMean | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Smooth-L1 + BCE, each a mean over its elements of ``raw``/``target`` [N, A].

        ``mean(sum, count)``, when given, takes each term's mean instead of torch's: GR-1's training
        passes the training layer's mean over the global batch (its rows are the non-padded chunk
        steps, a different number in each process's share; ``hralign.train.distributed.global_mean``).
        """
        g = self.gripper_mask
        logs: dict[str, float] = {}
        loss = raw.new_zeros(())
        if (~g).any():
            arm_raw, arm_target = raw[:, ~g], ((target - self.mean) / self.std)[:, ~g]
            arm = (F.smooth_l1_loss(arm_raw, arm_target) if mean is None
                   else _elementwise_mean(F.smooth_l1_loss(arm_raw, arm_target, reduction="none"), mean))
            loss = loss + arm
            logs["smooth_l1"] = float(arm.detach())
        if g.any():
            bce = (F.binary_cross_entropy_with_logits(raw[:, g], target[:, g].float()) if mean is None
                   else _elementwise_mean(F.binary_cross_entropy_with_logits(raw[:, g], target[:, g].float(),
                                                                               reduction="none"), mean))
            loss = loss + bce
            logs["bce"] = float(bce.detach())
        return loss, logs

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        out = raw * self.std + self.mean
        return torch.where(self.gripper_mask, (raw > 0).to(raw.dtype), out)


class BinnedHead(ActionHead):
    """LAPA: ``num_bins`` training-set quantile bins per dim, cross-entropy, decoded to bin centres.

    Repeated quantiles (a dim with few distinct values, such as a binary gripper) give empty bins;
    they are kept so every dim has the same number of logits and are never a target.
    """

    def __init__(self, in_dim: int, action_dim: int, num_bins: int = 256, **_: object) -> None:
        super().__init__(in_dim, action_dim, action_dim * num_bins)
        self.num_bins = int(num_bins)
        self.register_buffer("edges", torch.zeros(action_dim, num_bins - 1))  # inner edges
        self.register_buffer("centres", torch.zeros(action_dim, num_bins))

    def fit(self, actions: torch.Tensor) -> "BinnedHead":
        a = self._check_actions(actions)
        q = torch.linspace(0, 1, self.num_bins + 1, dtype=torch.float64)[1:-1]
        edges = torch.quantile(a.double(), q, dim=0).T.float().contiguous()  # (A, nb-1)
        self.edges.copy_(edges)
        bins = self.bin(a)  # (N, A)
        lo, hi = a.min(0).values, a.max(0).values
        full = torch.cat([lo[:, None], edges, hi[:, None]], 1)  # (A, nb+1)
        centres = (full[:, :-1] + full[:, 1:]) / 2  # midpoints for empty bins
        for d in range(self.action_dim):
            sums = torch.zeros(self.num_bins).index_add_(0, bins[:, d], a[:, d])
            counts = torch.bincount(bins[:, d], minlength=self.num_bins).float()
            centres[d] = torch.where(counts > 0, sums / counts.clamp_min(1), centres[d])
        self.centres.copy_(centres)
        self.fitted.fill_(True)
        return self

    def bin(self, actions: torch.Tensor) -> torch.Tensor:
        """Bin index of every value, int64 [N, A] (values equal to an edge go to the upper bin)."""
        return torch.stack([torch.bucketize(actions[:, d].contiguous(), self.edges[d], right=True)
                            for d in range(self.action_dim)], 1)

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = raw.view(-1, self.action_dim, self.num_bins)
        labels = self.bin(target.float())
        loss = F.cross_entropy(logits.reshape(-1, self.num_bins), labels.reshape(-1))
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"ce": float(loss.detach()), "bin_acc": float(acc)}

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        idx = raw.view(-1, self.action_dim, self.num_bins).argmax(-1)  # (B, A)
        return torch.gather(self.centres.expand(idx.shape[0], -1, -1), 2, idx[..., None]).squeeze(-1)


HEADS: dict[str, Callable[..., ActionHead]] = {}


def register_head(name: str, factory: Callable[..., ActionHead]) -> None:
    """Register an action head ``factory(in_dim, action_dim, num_bins=, gripper_dims=)``; duplicates are an error."""
    if name in HEADS:
        raise HRAlignError(f"action head {name!r} is already registered")
    HEADS[name] = factory


def build_head(name: str, in_dim: int, action_dim: int, num_bins: int = 256,
               gripper_dims: list[int] | None = None) -> ActionHead:
    """The head registered as ``name``; an unknown name lists the known ones."""
    if name not in HEADS:
        raise HRAlignError(f"unknown action head {name!r}; known: {', '.join(sorted(HEADS))}")
    return HEADS[name](in_dim, action_dim, num_bins=num_bins, gripper_dims=gripper_dims)


register_head("bc", MSEHead)
register_head("continuous", ContinuousHead)
register_head("binned", BinnedHead)
