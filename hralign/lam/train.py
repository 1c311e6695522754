"""Training a LAM on the clips of a pairs file (``hralign lam train``).

One step: sample a batch of (x_t, x_{t+H}) pairs, IDM -> quantiser -> FDM, MSE to x_{t+H} (pixels
or frozen-encoder features), AdamW. Every ``restart_every`` steps dead codes are restarted.
What is the LAM's own lives here: its batches (rows drawn from (seed, step)), its loss, its
evaluation and its dead-code restart; devices, processes, the run directory, checkpoints,
metrics and resume are the training layer's (:mod:`hralign.train`, docs/training.md). Under
several processes the quantiser sees the global batch (codebook init, usage, restarts, noise),
so the weights are those of one process on the same global batch.
Run directory: see :mod:`hralign.lam.io`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hralign.encoders import load_encoder
from hralign.config_checks import check_int, check_ints, check_number
from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.data import FramePairs, check_frame_size, resolve_domains
from hralign.lam.io import META_FILE, save_lam
from hralign.lam.model import LatentActionModel, psnr
from hralign.lam.quantizer import perplexity
from hralign.lam.supervision import ActionSupervision
from hralign.pairs import PairsFile
from hralign.train import Phase, TrainConfig, open_session

# Derived from the target encoder (not options): not compared on --resume.
RESUMABLE_FIELDS = ("target_tokens", "target_token_dim")
HEAD_PREFIX = "action_head."  # checkpoint keys of the action-supervision head (not part of the saved LAM)


@dataclass
class LAMTrainConfig(TrainConfig):
    """How to train a LAM (the architecture is :class:`LAMConfig`); shared fields from :class:`hralign.train.TrainConfig`."""

    steps: int = field(default=2000, metadata={"help": "Optimiser steps."})
    lr: float = field(default=3e-4, metadata={"help": "Peak learning rate of AdamW."})
    batch_size: int = field(default=32, metadata={"help": "Frame pairs per step, summed over processes."})
    pairs: str = field(default="", metadata={"help": "Pairs file (HDF5) whose clips are the training video."})
    out: str = field(default="", metadata={"help": "Output LAM directory (and run directory)."})
    domain: str = field(default="both", metadata={"help": "Clips to learn from: human, robot or both."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    rollout_steps: int = field(default=1, metadata={"help": "FDM steps unrolled per training sample: K > 1 reads "
                                                               "K+1 frames `gap` apart and feeds the FDM its own "
                                                               "predictions after the first step, as a rollout does "
                                                               "(pixel targets; costs ~K times a step)."})
    restart_every: int = field(default=100, metadata={"help": "Restart dead codes every N steps (0: never)."})
    eval_pairs: int = field(default=512, metadata={"help": "Frame pairs in the fixed evaluation set."})
    action_pairs: str = field(default="", metadata={"help": "Pairs file whose robot clips (with /robot/actions) give "
                                                             "the labelled frame pairs of action supervision (LAOM; "
                                                             "with --action-weight)."})
    action_fraction: float = field(default=0.025, metadata={"help": "Share of --action-pairs' robot frame pairs "
                                                                     "that are labelled (LAOM: 2.5%)."})
    action_weight: float = field(default=0.0, metadata={"help": "Weight of the linear action head's loss on the "
                                                                 "labelled pairs (0: no action supervision)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ints(self, ("eval_pairs", "rollout_steps"), 1, flag=True)
        check_int(self.restart_every, "restart_every", 0, flag=True)
        check_number(self.weight_decay, "weight_decay", 0, flag=True)
        check_number(self.action_fraction, "action_fraction", 0, 1, lo_open=True, flag=True)
        check_number(self.action_weight, "action_weight", 0, flag=True)
        if self.action_weight and not self.action_pairs:
            raise HRAlignError(f"`--action-weight` {self.action_weight} needs `--action-pairs` (a pairs file with "
                               "robot actions)")
        if self.action_pairs and not self.action_weight:
            raise HRAlignError(f"`--action-pairs` {self.action_pairs} is unused without `--action-weight` > 0")


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------
class FeatureTarget:
    """Tokens of a frozen encoder (UniVLA: reconstruct DINOv2 patch features, not pixels).

    The tokens are the input of the encoder's last stage (before pooling): a ResNet's layer4 map
    (B, C, h, w) -> (B, h*w, C), a ViT's tokens (B, N, D) as they are; when that is already a
    vector, the pooled feature (B, D) is one token.
    """

    def __init__(self, spec: str, image_size: int | None = None) -> None:
        self.encoder = load_encoder(spec, image_size=image_size)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> (B, tokens, dim)."""
        enc = self.encoder
        f = enc.forward_until(enc.preprocess(frames), enc.stage_names[-1])
        if f.ndim == 4:
            return f.flatten(2).transpose(1, 2).float()
        if f.ndim == 3:
            return f.float()
        return enc(frames).float()[:, None, :]


def build_lam(config: LAMConfig, sample_frame: np.ndarray | None = None) -> tuple[LatentActionModel, FeatureTarget | None]:
    """Model + feature target (None for pixels); sets ``target_tokens``/``target_token_dim`` for features."""
    target = None
    if config.target == "features":
        target = FeatureTarget(str(config.target_encoder), config.target_image_size)
        if sample_frame is None:
            sample_frame = np.zeros((1, config.image_size, config.image_size, 3), np.uint8)
        tokens = target(sample_frame)
        shape = (int(tokens.shape[1]), int(tokens.shape[2]))
        if config.target_tokens not in (None, shape[0]) or config.target_token_dim not in (None, shape[1]):
            raise HRAlignError(f"target encoder {config.target_encoder!r} gives {shape[0]} tokens of {shape[1]}, "
                               f"the LAM config says {config.target_tokens} of {config.target_token_dim}")
        config.target_tokens, config.target_token_dim = shape
    return LatentActionModel(config), target


def _batch(model: LatentActionModel, target: FeatureTarget | None, frames: np.ndarray):
    x = model.preprocess(frames)
    if target is None:
        return x, None, None
    return x, target(frames[:, 0]).to(x.device), target(frames[:, 1]).to(x.device)


def _sequences(model: LatentActionModel, frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, K+1, S, S, 3) from :class:`FramePairs` (sizes checked there) -> (B, K+1, 3, S, S) in [-1, 1]."""
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255.0
    return (x.to(model.quantizer.codebook.device) - 0.5) / 0.5


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_lam(model: LatentActionModel, data: FramePairs, rows: np.ndarray, target: FeatureTarget | None = None,
                 batch_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Reconstruction vs the copy-x_t baseline and vs the FDM fed another sample's latent action
    (shuffled within the batch: what the latent adds beyond denoising x_t), codebook use."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    sums = {"recon": 0.0, "copy": 0.0, "shuffled": 0.0}
    codes_all = []
    n = 0
    for i in range(0, len(rows), batch_size):
        frames = data.get(rows[i:i + batch_size])
        x, cur, tgt = _batch(model, target, frames)
        out = model(x, cur, tgt)
        b = x.shape[0]
        cur = model.pixel_tokens(x[:, 0] * 0.5 + 0.5) if cur is None else cur
        tgt = model.pixel_tokens(x[:, 1] * 0.5 + 0.5) if tgt is None else tgt
        q = model.quantize(out.latents).quantized  # eval mode: the codes' vectors (continuous: the latents)
        perm = torch.randperm(b, generator=g)
        shuffled = model.fdm(cur, q[perm])
        sums["recon"] += float(out.recon_mse) * b
        sums["copy"] += float(out.copy_mse) * b
        sums["shuffled"] += float(torch.nn.functional.mse_loss(shuffled, tgt)) * b
        codes_all.append(out.codes)
        n += b
    model.train(was_training)
    codes = torch.cat(codes_all)  # (N, tokens)
    k = model.config.codebook_size
    res: dict[str, Any] = {"eval_pairs": n, "recon_mse": sums["recon"] / n, "copy_mse": sums["copy"] / n,
                           "shuffled_action_mse": sums["shuffled"] / n,
                           "perplexity": perplexity(codes, k),
                           "perplexity_per_token": [perplexity(codes[:, j], k) for j in range(codes.shape[1])],
                           "usage_per_token": [int(torch.unique(codes[:, j]).numel()) for j in range(codes.shape[1])],
                           "codebook_size": k}
    if model.config.target == "pixels":
        res.update(psnr=psnr(res["recon_mse"]), copy_psnr=psnr(res["copy_mse"]),
                   shuffled_action_psnr=psnr(res["shuffled_action_mse"]))
    return res


def config_for_pairs(pairs_path: str, domain: str, **model_options: Any) -> LAMConfig:
    """A :class:`LAMConfig` whose ``image_size`` defaults to the pairs file's frame size."""
    if model_options.get("image_size") is None:
        pairs = PairsFile(pairs_path)
        model_options["image_size"] = check_frame_size(pairs, resolve_domains(pairs, domain), None)
    return LAMConfig(**model_options)


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------
class _Step(nn.Module):
    """One training forward of the LAM on uint8 frames, as a module so DDP sees it (plain or unrolled),
    plus the action head's loss on labelled robot pairs when ``supervision`` is given."""

    def __init__(self, model: LatentActionModel, target: FeatureTarget | None, unrolled: bool,
                 supervision: ActionSupervision | None = None, action_weight: float = 0.0) -> None:
        super().__init__()
        self.model, self.target, self.unrolled = model, target, unrolled
        self.supervision, self.action_weight = supervision, action_weight

    def forward(self, frames: np.ndarray, labelled: tuple[np.ndarray, torch.Tensor] | None = None):
        if self.unrolled:
            out = self.model.forward_unrolled(_sequences(self.model, frames))
        else:
            out = self.model(*_batch(self.model, self.target, frames))
        if self.supervision is None or labelled is None:
            return out, None
        action = self.supervision.loss(self.model, *labelled)
        return dataclasses.replace(out, loss=out.loss + self.action_weight * action), action.detach()


def _summarize(window: list[dict[str, Any]], config: LAMConfig) -> dict[str, Any]:
    """A metrics line: mean losses, codebook use over the window's codes (this process's), restarts."""
    codes = torch.cat([e["codes"] for e in window])  # (N, tokens)
    k = config.codebook_size
    rec = {"loss": float(np.mean([e["loss"] for e in window])),
           "recon_mse": float(np.mean([e["recon_mse"] for e in window])),
           "copy_mse": float(np.mean([e["copy_mse"] for e in window])), "perplexity": perplexity(codes, k),
           "perplexity_per_token": [perplexity(codes[:, j], k) for j in range(codes.shape[1])],
           "usage_per_token": [int(torch.unique(codes[:, j]).numel()) for j in range(codes.shape[1])],
           "lr": window[-1]["lr"]}
    if "action_loss" in window[-1]:
        rec["action_loss"] = float(np.mean([e["action_loss"] for e in window]))
    if config.target == "pixels":
        rec.update(psnr=psnr(rec["recon_mse"]), copy_psnr=psnr(rec["copy_mse"]))
    restarted = [e["restarted_codes"] for e in window if "restarted_codes" in e]
    if restarted:
        rec["restarted_codes"] = int(sum(restarted))
    return rec


def train_lam(model_config: LAMConfig, cfg: LAMTrainConfig, progress: bool = True,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a LAM and write it to ``cfg.out``; returns the final evaluation (see :func:`evaluate_lam`).

    Runs alone or under ``torchrun`` / ``accelerate launch``; other processes than the main one
    return ``{}``.
    """
    session = open_session(cfg, cfg.out, "lam", {"train": cfg.to_dict(), "model": model_config.to_dict()},
                           RESUMABLE_FIELDS)
    if not cfg.pairs:
        raise HRAlignError("`--pairs` is required: the pairs file whose clips the LAM learns from")
    pairs = PairsFile(cfg.pairs)
    domains = resolve_domains(pairs, cfg.domain)
    check_frame_size(pairs, domains, model_config.image_size)
    data = FramePairs(pairs, domains, model_config.gap)
    if cfg.rollout_steps > 1 and model_config.target != "pixels":
        raise HRAlignError(f"`--rollout-steps` {cfg.rollout_steps} feeds predicted frames back to the FDM; "
                           "it needs --target pixels")
    # training samples: frame pairs, or sequences of rollout_steps transitions (evaluation stays on pairs)
    train_data = data if cfg.rollout_steps == 1 else FramePairs(pairs, domains, model_config.gap,
                                                                 steps=cfg.rollout_steps)

    torch.manual_seed(cfg.seed)
    sample = data.get(np.array([0]))[:, 0]
    model, target = build_lam(model_config, sample)
    model.to(session.device)
    model.quantizer.gather = session.gather  # None alone: the global batch is this process's
    session.begin()
    eval_rows = np.sort(np.random.default_rng([cfg.seed, 7]).permutation(len(data))[:cfg.eval_pairs])

    supervision = None
    if cfg.action_weight:
        supervision = ActionSupervision(cfg.action_pairs, cfg.action_fraction, model_config.gap,
                                        model_config.image_size, model_config.latent_dim, cfg.seed).to(session.device)
        if log is not None:
            log(f"action supervision: {len(supervision)} of {supervision.total} robot frame pairs of "
                f"{cfg.action_pairs} labelled ({supervision.clips} clips)")

    def forward(step_module: nn.Module, step: int):
        rows = np.random.default_rng([cfg.seed, step]).integers(0, len(train_data), cfg.batch_size)  # global batch
        labelled = None
        if supervision is not None:
            frames, targets = supervision.batch(cfg.batch_size, cfg.seed, step)
            local = session.local_rows(np.arange(cfg.batch_size))
            labelled = (frames[local], targets[local])
        outp, action = step_module(train_data.get(session.local_rows(rows)), labelled)
        logs = {"recon_mse": float(outp.recon_mse), "copy_mse": float(outp.copy_mse), "codes": outp.codes}
        if action is not None:
            logs["action_loss"] = float(action)
        return outp.loss, logs

    def restart(step: int) -> dict[str, Any] | None:
        if cfg.restart_every and step % cfg.restart_every == 0:
            return {"restarted_codes": model.quantizer.restart_dead_codes(model_config.dead_code_threshold)}
        return None

    def tensors() -> dict[str, torch.Tensor]:
        extra = {} if supervision is None else {f"{HEAD_PREFIX}{k}": v for k, v in supervision.head.state_dict().items()}
        return {**model.state_dict(), **extra}

    def load_tensors(state: dict[str, torch.Tensor]) -> None:
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)})
        if supervision is not None:
            supervision.head.load_state_dict({k[len(HEAD_PREFIX):]: v for k, v in state.items()
                                              if k.startswith(HEAD_PREFIX)})

    session.run_phase(Phase(
        "train", cfg.steps, _Step(model, target, cfg.rollout_steps > 1, supervision, cfg.action_weight), forward,
        weight_decay=cfg.weight_decay,
        evaluate=lambda step: evaluate_lam(model, data, eval_rows, target, seed=cfg.seed), after_step=restart,
        summarize=lambda window: _summarize(window, model_config), tensors=tensors,
        load_tensors=load_tensors), progress=progress)

    result: dict[str, Any] = {}
    if session.is_main:
        result = evaluate_lam(model, data, eval_rows, target, seed=cfg.seed)
        session.log({"step": cfg.steps, "eval": result})
        train_meta = {"pairs": str(cfg.pairs), "domain": cfg.domain, "steps": cfg.steps, "final_eval": result}
        if supervision is not None:
            train_meta["action_supervision"] = {"pairs": cfg.action_pairs, "weight": cfg.action_weight,
                                                "labelled_pairs": len(supervision), "of_pairs": supervision.total,
                                                "clips": supervision.clips}
        save_lam(model, session.path, train=train_meta)
        if log is not None:
            log(f"wrote {session.path / META_FILE}")
    session.finish()
    return result
