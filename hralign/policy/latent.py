"""Latent-action policy + robot action head (LAPA, Ye et al., 2024; IGOR, Chen et al., 2024).

Stage 1 (``latent``): features of the current frame(s) + the instruction embedding -> the LAM's
latent action tokens, cross-entropy per token. Labels come from the LAM on human AND robot clips,
so no robot actions are needed. Stage 2 (``action``): a small head maps the policy's hidden state
+ the features (+ proprioception) to real robot actions, trained on the few robot clips that have
``/robot/actions``. By default the latent trunk is frozen in stage 2 (LAPA fine-tunes the whole
VLA; with a handful of demos a frozen trunk overfits less).

A batch is a dict: ``features`` [B, k*D], ``instruction`` [B, E] (when configured), ``state``
[B, S] (when configured), and the targets ``tokens`` int64 [B, K] and/or ``action`` [B, A].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from hralign.policy.bc import gather_inputs
from hralign.policy.config import LatentPolicyConfig, parse_gripper_dims
from hralign.policy.future import FutureHead
from hralign.policy.nets import ActionNet, MLPTrunk


class LatentPolicy(nn.Module):
    """Predicts LAM tokens from images + language, and robot actions from its hidden state."""

    name = "latent"

    def __init__(self, config: LatentPolicyConfig, feature_dim: int, action_dim: int, num_tokens: int,
                 codebook_size: int, state_dim: int = 0, instruction_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.dims = {"feature_dim": int(feature_dim), "action_dim": int(action_dim), "num_tokens": int(num_tokens),
                     "codebook_size": int(codebook_size), "state_dim": int(state_dim) if config.proprio else 0,
                     "instruction_dim": int(instruction_dim) if config.instruction else 0}
        k = config.context_frames
        self.trunk = MLPTrunk(feature_dim * k + self.dims["instruction_dim"], config.latent_hidden_dim,
                              config.latent_layers)
        self.token_head = nn.Linear(config.latent_hidden_dim, num_tokens * codebook_size)
        action_in = config.latent_hidden_dim + feature_dim * k + self.dims["state_dim"]
        self.action_net = ActionNet(action_in, action_dim, config.head, config.hidden_dim, config.num_layers,
                                    config.num_bins, parse_gripper_dims(config.gripper_dims, action_dim))
        # GR-1's [OBS] auxiliary on the latent trunk (hralign.policy.future): trained with the tokens, on
        # human and robot clips alike (each through its own encoder), since the trunk learns there
        self.future_head = (FutureHead(config.latent_hidden_dim, feature_dim, config.future_loss)
                            if config.future_features else None)
        self._trunk_trainable = True

    @classmethod
    def from_dims(cls, config: LatentPolicyConfig, dims: dict[str, int]) -> "LatentPolicy":
        """The policy for data of ``dims`` (the registry's constructor, :func:`hralign.policy.make_policy`)."""
        return cls(config, dims["feature_dim"], dims["action_dim"], dims["num_tokens"], dims["codebook_size"],
                   dims.get("state_dim", 0), dims.get("instruction_dim", 0))

    # -- stages -------------------------------------------------------------------------------------
    def freeze_trunk(self, frozen: bool = True) -> None:
        """Freeze the latent trunk + token head (stage 2 default): no gradients, BatchNorm stats fixed."""
        self._trunk_trainable = not frozen
        self.trunk.requires_grad_(not frozen)
        self.token_head.requires_grad_(not frozen)
        if self.future_head is not None:
            self.future_head.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "LatentPolicy":
        super().train(mode)
        if not self._trunk_trainable:
            self.trunk.train(False)
            self.token_head.train(False)
        return self

    def fit_head(self, actions: torch.Tensor) -> None:
        self.action_net.head.fit(actions)

    def fit_future(self, features: torch.Tensor) -> None:
        """Standardisation of the future-feature targets (no-op without the auxiliary)."""
        if self.future_head is not None:
            self.future_head.fit(features)

    # -- network --------------------------------------------------------------------------------------
    def hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The latent policy's hidden state [B, latent_hidden_dim]."""
        d, k = self.dims, self.config.context_frames
        return self.trunk(gather_inputs(batch, [("features", d["feature_dim"] * k),
                                                ("instruction", d["instruction_dim"])]))

    def token_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.token_head(h).view(-1, self.dims["num_tokens"], self.dims["codebook_size"])  # (B, K, C)

    def _action_raw(self, batch: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        d, k = self.dims, self.config.context_frames
        rest = gather_inputs(batch, [("features", d["feature_dim"] * k), ("state", d["state_dim"])])
        if not self._trunk_trainable:
            h = h.detach()
        return self.action_net(torch.cat([h, rest], 1))

    # -- LeRobot-shaped API ---------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor],
                mean: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of the losses whose targets are in ``batch`` (``tokens``: CE per token; ``action``: head loss).

        ``mean``: how the future loss's masked sum becomes a mean (the training layer's
        ``Session.masked_mean``, over the global batch under several processes); default this batch's.
        """
        h = self.hidden(batch)
        loss = h.new_zeros(())
        logs: dict[str, float] = {}
        if "tokens" in batch:
            logits = self.token_logits(h)
            tokens = batch["tokens"].long()
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))
            loss = loss + ce
            logs["token_ce"] = float(ce.detach())
            logs["token_acc"] = float((logits.argmax(-1) == tokens).float().mean())
        if "action" in batch:
            raw = self._action_raw(batch, h)
            al, alogs = self.action_net.head.loss(raw, batch["action"].float())
            loss = loss + al
            logs["action_loss"] = float(al.detach())
            logs.update(alogs)
        if self.future_head is not None and self._trunk_trainable and "future" in batch:
            fl = self.future_head.loss(h, batch["future"], batch["future_valid"], mean)
            loss = loss + self.config.future_weight * fl
            logs["future_loss"] = float(fl.detach())
        return loss, logs

    @torch.no_grad()
    def predict_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Most likely latent tokens, int64 [B, K]."""
        was = self.training
        self.eval()
        try:
            return self.token_logits(self.hidden(batch)).argmax(-1)
        finally:
            self.train(was)

    @torch.no_grad()
    def select_action(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Robot actions [B, A] in dataset units."""
        was = self.training
        self.eval()
        try:
            return self.action_net.head.decode(self._action_raw(batch, self.hidden(batch)))
        finally:
            self.train(was)
