"""GR-1-style policy: a causal transformer over the last H steps with [ACT] and [OBS] queries.

GR-1 (Wu et al., 2024) tokenises every step t of the history as (language, proprio, image) and adds
learned query tokens: [OBS] (here one per camera) predicts the future observation, [ACT] is read by
the action heads. Attention is causal over steps, and the query tokens are seen by nobody but
themselves, so a prediction at step t depends only on observations up to t (tested).

What hralign changes, and why:

* Image tokens are the frozen (HR-Align-adapted) encoder's features of each camera, as GR-1 freezes
  its MAE image encoder; the [OBS] queries predict the *features* of frame t+delta from the same
  frozen encoder rather than pixels through a decoder. The encoder is what HR-Align aligns, so the
  features are the representation both embodiments share; predicting them needs no decoder, runs on
  cached features (two CPU cores) and does not spend capacity on pixel detail (lighting, textures)
  that differs between human and robot video. The cost: the policy cannot be inspected by decoding
  images, and the target is only as informative as the frozen encoder.
* Actions come in chunks of k steps (ACT, Zhao et al., 2023), executed with ACT's temporal
  ensembling (:class:`TemporalEnsembler`); k = 1 is GR-1's one action per step.

Batches (one window of n <= H consecutive steps per row; C cameras; D feature dim)::

    features      [B, n, C, D] (or [B, n, D] for one camera)  frozen features of frames s..s+n-1
    state         [B, n, S]    optional proprio (absent for human clips: a learned "no state" token)
    instruction   [B, E]       frozen MiniLM embedding of the task instruction
    action        [B, n, k, A] training only: actions t..t+k-1 for every step t of the window
    action_is_pad [B, n, k]    True where t+j runs past the clip end (no loss)
    future        [B, n, C, D] training only: features of frame t+delta
    future_valid  [B, n]       0 where t+delta runs past the clip end
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Callable

import torch
from torch import nn

from hralign.errors import HRAlignError
from hralign.policy.config import parse_gripper_dims
from hralign.policy.future import FutureHead
from hralign.policy.gr1.config import GR1Config
from hralign.policy.heads import ContinuousHead


def step_mask(n: int, obs_per_step: int, queries_per_step: int) -> torch.Tensor:
    """GR-1's attention mask over n steps of [obs tokens..., query tokens...]: bool [L, L], True = blocked.

    Token i may attend token j when j is an observation token of a step <= step(i), or j == i; query
    tokens ([OBS], [ACT]) are therefore invisible to every other token, and nothing sees the future.
    """
    per = obs_per_step + queries_per_step
    step = torch.arange(n).repeat_interleave(per)  # (L,)
    is_obs = (torch.arange(per) < obs_per_step).repeat(n)  # (L,)
    allowed = is_obs[None, :] & (step[None, :] <= step[:, None])
    allowed |= torch.eye(n * per, dtype=torch.bool)
    return ~allowed


def _without_key_bias_grad(grad: torch.Tensor, dim: int) -> torch.Tensor:
    """The gradient of attention's packed q/k/v bias with the key part set to 0.

    The key bias has no effect: it adds q.b_k to every logit of a query's row, which the softmax
    removes, so its true gradient is 0 and the computed one is rounding noise. AdamW divides each
    step by the gradient's running scale and would turn that noise into steps of up to lr (a random
    walk of a parameter that does nothing; 2 processes vs 1 ended 3.5e-4 apart there after 7 steps,
    while every other weight agreed to ~1e-7). With its gradient 0 it stays at its initial 0.
    """
    grad = grad.clone()
    grad[dim:2 * dim] = 0
    return grad


class GR1Net(nn.Module):
    """The bare network: tokens of n steps -> ([ACT] hidden [B, n, dim], [OBS] hidden [B, n, C, dim])."""

    def __init__(self, config: GR1Config, feature_dim: int, cameras: int, state_dim: int, instruction_dim: int) -> None:
        super().__init__()
        d = config.dim
        self.cameras, self.state_dim, self.instruction_dim = int(cameras), int(state_dim), int(instruction_dim)
        self.image_in = nn.Linear(feature_dim, d)
        self.camera_emb = nn.Parameter(torch.zeros(cameras, d))
        self.state_in = nn.Linear(state_dim, d) if state_dim else None
        self.no_state = nn.Parameter(torch.zeros(d)) if state_dim else None
        self.instruction_in = nn.Linear(instruction_dim, d) if instruction_dim else None
        self.obs_queries = nn.Parameter(torch.randn(cameras, d) * 0.02)
        self.act_query = nn.Parameter(torch.randn(1, d) * 0.02)
        self.step_emb = nn.Parameter(torch.randn(config.history, d) * 0.02)
        self.obs_per_step = (1 if instruction_dim else 0) + (1 if state_dim else 0) + cameras
        self.queries_per_step = cameras + 1
        self.type_emb = nn.Parameter(torch.randn(self.obs_per_step + self.queries_per_step, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, config.heads, 4 * d, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        for block in self.transformer.layers:  # see _without_key_bias_grad
            block.self_attn.in_proj_bias.register_hook(functools.partial(_without_key_bias_grad, dim=d))
        self.norm = nn.LayerNorm(d)

    def forward(self, features: torch.Tensor, state: torch.Tensor | None,
                instruction: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Private: inputs already checked by :meth:`GR1Policy._inputs`."""
        b, n = features.shape[:2]
        tokens = []
        if self.instruction_in is not None:
            tokens.append(self.instruction_in(instruction)[:, None, None, :].expand(b, n, 1, -1))  # (B, n, 1, d)
        if self.state_in is not None:
            st = self.state_in(state) if state is not None else self.no_state.expand(b, n, -1)
            tokens.append(st[:, :, None, :])
        tokens.append(self.image_in(features) + self.camera_emb)  # (B, n, C, d)
        tokens.append(self.obs_queries.expand(b, n, -1, -1))
        tokens.append(self.act_query.expand(b, n, -1, -1))
        x = torch.cat(tokens, 2) + self.type_emb + self.step_emb[:n, None, :]  # (B, n, P, d)
        per = x.shape[2]
        mask = step_mask(n, self.obs_per_step, self.queries_per_step).to(x.device)
        h = self.norm(self.transformer(x.reshape(b, n * per, -1), mask=mask)).view(b, n, per, -1)
        q0 = self.obs_per_step
        return h[:, :, -1], h[:, :, q0:q0 + self.cameras]


class GR1Policy(nn.Module):
    """GR-1-style policy: ``forward(batch) -> (loss, logs)``, ``select_chunk`` / ``select_action`` to act.

    Parameters
    ----------
    config : GR1Config
    dims : dict
        ``feature_dim``, ``action_dim`` and optionally ``cameras`` (1), ``state_dim`` (0),
        ``instruction_dim`` (0); state/instruction widths are dropped when the config turns them off.
    """

    name = "gr1"

    def __init__(self, config: GR1Config, dims: dict[str, int]) -> None:
        super().__init__()
        self.config = config
        try:
            self.dims = {"feature_dim": int(dims["feature_dim"]), "action_dim": int(dims["action_dim"]),
                         "cameras": int(dims.get("cameras", 1)),
                         "state_dim": int(dims.get("state_dim", 0)) if config.proprio else 0,
                         "instruction_dim": int(dims.get("instruction_dim", 0)) if config.instruction else 0}
        except KeyError as e:
            raise HRAlignError(f"GR-1 policy dims lack {e}") from e
        d = self.dims
        self.net = GR1Net(config, d["feature_dim"], d["cameras"], d["state_dim"], d["instruction_dim"])
        self.chunk_proj = nn.Linear(config.dim, config.chunk * config.dim)
        # GR-1's action heads: smooth-L1 on the standardised arm dims, BCE on the gripper dims
        self.action_head = ContinuousHead(config.dim, d["action_dim"],
                                          parse_gripper_dims(config.gripper_dims, d["action_dim"]))
        self.future_head = FutureHead(config.dim, d["feature_dim"], config.future_loss)
        if config.normalize_inputs:  # fitted by fit_inputs; identity until then
            self.register_buffer("feature_mean", torch.zeros(d["feature_dim"]))
            self.register_buffer("feature_std", torch.ones(d["feature_dim"]))
            self.register_buffer("state_mean", torch.zeros(d["state_dim"]))
            self.register_buffer("state_std", torch.ones(d["state_dim"]))

    @classmethod
    def from_dims(cls, config: GR1Config, dims: dict[str, int]) -> "GR1Policy":
        """The registry's constructor (:func:`hralign.policy.make_policy`): the same as ``GR1Policy(config, dims)``."""
        return cls(config, dims)

    # ------------------------------------------------------------------ statistics
    def fit_head(self, actions: torch.Tensor) -> None:
        """Standardisation of the arm dims (and the [0, 1] check of the gripper dims) from training actions [N, A]."""
        self.action_head.fit(actions)

    def fit_future(self, features: torch.Tensor) -> None:
        """Per-dim mean/std of the future-feature targets [N, D]."""
        self.future_head.fit(features)

    @torch.no_grad()
    def fit_inputs(self, features: torch.Tensor, state: torch.Tensor | None = None) -> None:
        """Per-dim mean/std of the input features [N, D] (and proprio [N, S]) from the training frames.

        Why: a frozen encoder's features (random-init or pretrained) differ in scale by orders of
        magnitude between dims and share a large common offset; projected raw, the few large dims
        dominate the tokens and the rest train slowly. BC standardises its inputs with BatchNorm; a
        fixed standardisation does the same without batch statistics (windows of one clip are not
        independent samples) and needs nothing at inference. The std is floored as the future
        targets' (dead dims stay 0). A no-op when ``normalize_inputs`` is off.
        """
        if not self.config.normalize_inputs:
            return
        for name, x in (("feature", features), ("state", state)):
            if x is None or getattr(self, f"{name}_mean").numel() == 0:
                continue
            x = x.float().reshape(-1, x.shape[-1])
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0, unbiased=False).clamp_min(1e-4 * float(x.std()) + 1e-8))

    # ------------------------------------------------------------------ inputs
    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        d = self.dims
        if "features" not in batch:
            raise HRAlignError("GR-1 batch: missing 'features' [B, n, C, D]")
        f = batch["features"].float()
        if f.ndim == 3:
            f = f[:, :, None, :]
        if f.ndim != 4 or f.shape[2] != d["cameras"] or f.shape[3] != d["feature_dim"]:
            raise HRAlignError(f"GR-1 batch: 'features' should be [B, n, {d['cameras']}, {d['feature_dim']}] but has "
                               f"shape {list(batch['features'].shape)}")
        b, n = f.shape[:2]
        if not 1 <= n <= self.config.history:
            raise HRAlignError(f"GR-1 batch: {n} steps of history, the policy takes 1..{self.config.history} "
                               "(`history`)")
        state = None
        if d["state_dim"] and "state" in batch:
            state = batch["state"].float()
            if tuple(state.shape) != (b, n, d["state_dim"]):
                raise HRAlignError(f"GR-1 batch: 'state' should be [{b}, {n}, {d['state_dim']}] but has shape "
                                   f"{list(state.shape)}")
        instr = None
        if d["instruction_dim"]:
            if "instruction" not in batch:
                raise HRAlignError("GR-1 batch: missing 'instruction' (the policy was trained with it)")
            instr = batch["instruction"].float()
            if tuple(instr.shape) != (b, d["instruction_dim"]):
                raise HRAlignError(f"GR-1 batch: 'instruction' should be [{b}, {d['instruction_dim']}] but has shape "
                                   f"{list(instr.shape)}")
        if self.config.normalize_inputs:
            f = (f - self.feature_mean) / self.feature_std
            if state is not None:
                state = (state - self.state_mean) / self.state_std
        return f, state, instr

    def _raw_chunks(self, act_h: torch.Tensor) -> torch.Tensor:
        b, n, _ = act_h.shape
        return self.action_head(self.chunk_proj(act_h).view(b, n, self.config.chunk, -1))  # (B, n, k, A)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor],
                mean: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss over every step of the windows: action (when ``action`` is given) + weighted future loss.

        Both are means over counted positions (non-padded chunk steps, valid future frames);
        ``mean(sum, count)`` takes them (the training layer's ``Session.masked_mean``: over the global
        batch under several processes), default ``sum / count`` of this batch.
        """
        f, state, instr = self._inputs(batch)
        act_h, obs_h = self.net(f, state, instr)
        logs: dict[str, float] = {}
        loss = act_h.new_zeros(())
        if "future" in batch:
            fut = batch["future"].float()
            fut = fut[:, :, None, :] if fut.ndim == 3 else fut
            valid = batch["future_valid"].float()[:, :, None].expand(-1, -1, fut.shape[2])
            fl = self.future_head.loss(obs_h.reshape(-1, obs_h.shape[-1]), fut.reshape(-1, fut.shape[-1]),
                                       valid.reshape(-1), mean)
            logs["future_loss"] = float(fl.detach())
        if "action" in batch:
            keep = ~batch["action_is_pad"].bool()  # (B, n, k)
            al, alogs = self.action_head.loss(self._raw_chunks(act_h)[keep], batch["action"].float()[keep], mean)
            loss = al
            logs = {"action_loss": float(al.detach()), **alogs, **logs}
            if "future" in batch:
                loss = loss + self.config.future_weight * fl
        elif "future" in batch:
            loss = fl  # stage 1: future prediction only
        else:
            raise HRAlignError("GR-1 batch: neither 'action' nor 'future' given; nothing to train on")
        return loss, logs

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict_chunks(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded action chunks at every step of the windows: [B, n, k, A] (eval mode, no gradients)."""
        was = self.training
        self.eval()
        try:
            act_h, _ = self.net(*self._inputs(batch))
            raw = self._raw_chunks(act_h)
            return self.action_head.decode(raw.reshape(-1, raw.shape[-1])).view(raw.shape)
        finally:
            self.train(was)

    @torch.no_grad()
    def predict_future(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted features of frame t+delta at every step, in feature units: [B, n, C, D]."""
        was = self.training
        self.eval()
        try:
            _, obs_h = self.net(*self._inputs(batch))
            fh = self.future_head
            return fh(obs_h) * fh.std + fh.mean
        finally:
            self.train(was)

    def select_chunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions t..t+k-1 [B, k, A] from a history window ending at t (the window's last step)."""
        return self.predict_chunks(batch)[:, -1]

    def select_action(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first action of :meth:`select_chunk` [B, A] (no ensembling; :class:`GR1Runner` ensembles)."""
        return self.select_chunk(batch)[:, 0]

    def runner(self, n: int, max_steps: int | None = None) -> "GR1Runner":
        """A closed-loop executor for ``n`` parallel episodes (history buffers + temporal ensembling)."""
        return GR1Runner(self, n, max_steps)


class TemporalEnsembler:
    """ACT's temporal ensembling (Zhao et al., 2023, sec. 3.3) for one episode.

    Every step t the policy predicts a chunk â^(t)[0..k-1] for steps t..t+k-1. The executed action is

        a_t = sum_i w_i * â^(s_i)[t - s_i] / sum_i w_i,   w_i = exp(-m * i),

    over the n = min(t+1, k) chunks made at s_0 < s_1 < ... (the last n steps), i = 0 the oldest, as in
    ACT and LeRobot's ``ACTTemporalEnsembler``. Gripper dims (decoded to 0/1) are averaged the same way
    and thresholded at 0.5. Written here because lerobot is not a dependency of hralign (the
    arithmetic is a few lines; the test checks it against the formula).
    """

    def __init__(self, chunk: int, coeff: float, gripper_mask: torch.Tensor | None = None) -> None:
        self.chunk, self.coeff = int(chunk), float(coeff)
        self.gripper_mask = gripper_mask
        self.chunks: deque[torch.Tensor] = deque(maxlen=self.chunk)  # oldest first, made at consecutive steps

    def reset(self) -> None:
        self.chunks.clear()

    def step(self, chunk: torch.Tensor) -> torch.Tensor:
        """Add the chunk [k, A] predicted now; return the action [A] to execute now."""
        self.chunks.append(chunk)
        n = len(self.chunks)
        preds = torch.stack([c[n - 1 - i] for i, c in enumerate(self.chunks)])  # (n, A): each chunk's entry for now
        w = torch.exp(-self.coeff * torch.arange(n, dtype=preds.dtype))
        a = (w[:, None] * preds).sum(0) / w.sum()
        if self.gripper_mask is not None and bool(self.gripper_mask.any()):
            a = torch.where(self.gripper_mask, (a >= 0.5).to(a.dtype), a)
        return a


def check_chunk_fits(chunk: int, max_steps: int) -> None:
    """A chunk of k actions must fit in an episode of ``max_steps`` steps (one-line error otherwise)."""
    if chunk > max_steps:
        raise HRAlignError(f"`chunk` {chunk} is larger than the rollout limit of {max_steps} steps (--max-steps); "
                           "the chunk must fit in an episode")


class GR1Runner:
    """Runs a :class:`GR1Policy` closed loop over ``n`` episodes: keeps each one's last H observations and
    ensembles the chunks. ``act(obs, rows)`` takes one observation per row (episode index) now acting.
    """

    def __init__(self, policy: GR1Policy, n: int, max_steps: int | None = None) -> None:
        cfg = policy.config
        if max_steps is not None:
            check_chunk_fits(cfg.chunk, max_steps)
        self.policy = policy
        self.history: list[deque[dict[str, torch.Tensor]]] = [deque(maxlen=cfg.history) for _ in range(n)]
        grip = policy.action_head.gripper_mask
        self.ensemblers = [TemporalEnsembler(cfg.chunk, cfg.ensemble_coeff, grip) for _ in range(n)]

    def act(self, obs: dict[str, torch.Tensor], rows: list[int]) -> torch.Tensor:
        """Actions [len(rows), A] for observations ``obs`` (``features`` [B, C, D] or [B, D], optional
        ``state`` [B, S]; ``instruction`` [B, E]) of episodes ``rows``, one step later than their last call."""
        if len(rows) != int(obs["features"].shape[0]):
            raise HRAlignError(f"GR1Runner.act: {len(rows)} rows for {int(obs['features'].shape[0])} observations")
        for j, r in enumerate(rows):
            self.history[r].append({k: v[j] for k, v in obs.items() if k != "instruction"})
        out = torch.zeros(len(rows), self.policy.dims["action_dim"])
        by_len: dict[int, list[int]] = {}
        for j, r in enumerate(rows):  # episodes stepped in lockstep share a length; group to be safe
            by_len.setdefault(len(self.history[r]), []).append(j)
        for _, js in sorted(by_len.items()):
            batch = {k: torch.stack([torch.stack([h[k] for h in self.history[rows[j]]]) for j in js])
                     for k in self.history[rows[js[0]]][0]}
            if "instruction" in obs:
                batch["instruction"] = obs["instruction"][js]
            chunks = self.policy.select_chunk(batch)  # (b, k, A)
            for c, j in zip(chunks, js):
                out[j] = self.ensemblers[rows[j]].step(c)
        return out

