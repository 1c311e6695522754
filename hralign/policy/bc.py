"""Behaviour cloning on frozen (or adapted) encoder features: R3M's evaluation protocol.

``BCPolicy`` follows LeRobot's policy shape: ``forward(batch) -> (loss, logs)`` for training,
``select_action(batch) -> actions`` for acting, around the bare :class:`~hralign.policy.nets.ActionNet`.

A batch is a dict of tensors: ``features`` [B, k*D] (encoder features of frames t-k+1..t),
optional ``state`` [B, S] (proprioception), optional ``instruction`` [B, E] (frozen text
embedding) and, for training, ``action`` [B, A].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from hralign.errors import HRAlignError
from hralign.policy.config import BCConfig, parse_gripper_dims
from hralign.policy.future import FutureHead
from hralign.policy.nets import ActionNet


def gather_inputs(batch: dict[str, torch.Tensor], keys: list[tuple[str, int]]) -> torch.Tensor:
    """Concatenate ``batch[k]`` for each (key, width) with width > 0, checking shapes (user-facing)."""
    parts = []
    for key, width in keys:
        if width == 0:
            continue
        if key not in batch:
            raise HRAlignError(f"policy batch: missing {key!r} (the policy was trained with it)")
        x = batch[key]
        if x.ndim != 2 or x.shape[1] != width:
            raise HRAlignError(f"policy batch: {key!r} should be [B, {width}] but has shape {list(x.shape)}")
        parts.append(x.float())
    return torch.cat(parts, 1)


class BCPolicy(nn.Module):
    """R3M's BC: BatchNorm on [features, proprio], two hidden layers of 256, an action head."""

    name = "bc"

    def __init__(self, config: BCConfig, feature_dim: int, action_dim: int, state_dim: int = 0,
                 instruction_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.dims = {"feature_dim": int(feature_dim), "action_dim": int(action_dim),
                     "state_dim": int(state_dim) if config.proprio else 0,
                     "instruction_dim": int(instruction_dim) if config.instruction else 0}
        self.net = ActionNet(self._in_dim(), action_dim, config.head, config.hidden_dim, config.num_layers,
                             config.num_bins, parse_gripper_dims(config.gripper_dims, action_dim))
        # GR-1's [OBS] auxiliary (hralign.policy.future): features of frame t+delta from the trunk's hidden state
        self.future_head = (FutureHead(config.hidden_dim, feature_dim, config.future_loss)
                            if config.future_features else None)

    @classmethod
    def from_dims(cls, config: BCConfig, dims: dict[str, int]) -> "BCPolicy":
        """The policy for data of ``dims`` (the registry's constructor, :func:`hralign.policy.make_policy`)."""
        return cls(config, dims["feature_dim"], dims["action_dim"], dims.get("state_dim", 0),
                   dims.get("instruction_dim", 0))

    def _keys(self) -> list[tuple[str, int]]:
        d = self.dims
        return [("features", d["feature_dim"] * self.config.context_frames), ("state", d["state_dim"]),
                ("instruction", d["instruction_dim"])]

    def _in_dim(self) -> int:
        return sum(w for _, w in self._keys())

    def fit_head(self, actions: torch.Tensor) -> None:
        """Fit the head's statistics (standardisation or quantile bins) to the training actions."""
        self.net.head.fit(actions)

    def fit_future(self, features: torch.Tensor) -> None:
        """Standardisation of the future-feature targets (no-op without the auxiliary)."""
        if self.future_head is not None:
            self.future_head.fit(features)

    def forward(self, batch: dict[str, torch.Tensor],
                mean: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Action loss (+ the weighted future loss when the batch has ``future``); ``mean``: how the
        future loss's masked sum becomes a mean (``Session.masked_mean``), default this batch's."""
        h = self.net.trunk(gather_inputs(batch, self._keys()))
        loss, logs = self.net.head.loss(self.net.head(h), batch["action"].float())
        logs = {"action_loss": float(loss.detach()), **logs}
        if self.future_head is not None and "future" in batch:
            fl = self.future_head.loss(h, batch["future"], batch["future_valid"], mean)
            loss = loss + self.config.future_weight * fl
            logs["future_loss"] = float(fl.detach())
        return loss, logs

    @torch.no_grad()
    def select_action(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions [B, A] in the units of the dataset (eval mode, no gradients)."""
        was = self.training
        self.eval()
        try:
            return self.net.head.decode(self.net(gather_inputs(batch, self._keys())))
        finally:
            self.train(was)
