"""Training a LAM on the clips of a pairs file (``hralign lam train``).

One step: sample a batch of (x_t, x_{t+H}) pairs, IDM -> quantiser -> FDM, MSE to x_{t+H} (pixels
or frozen-encoder features), AdamW. Every ``restart_every`` steps dead codes are restarted.
Randomness is drawn from (seed, step), so a resumed run continues exactly as an uninterrupted one.
Run directory: see :mod:`hralign.lam.io`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hralign.atomic import atomic_dir, write_text_atomic
from hralign.encoders import load_encoder
from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.data import FramePairs, check_frame_size, resolve_domains
from hralign.lam.io import META_FILE, load_state, save_lam, save_state
from hralign.lam.model import LatentActionModel, psnr
from hralign.lam.quantizer import perplexity
from hralign.pairs import PairsFile

CHECKPOINT_DIR = "checkpoints/last"
METRICS_FILE = "metrics.jsonl"
TRAIN_CONFIG_FILE = "train_config.json"
LR_SCHEDULES = ("constant", "cosine")
RESUME_FIXED = ("pairs", "domain", "seed", "batch_size", "lr", "weight_decay", "restart_every")


@dataclass
class LAMTrainConfig:
    """How to train a LAM (the architecture is :class:`LAMConfig`)."""

    pairs: str = field(metadata={"help": "Pairs file (HDF5) whose clips are the training video."})
    out: str = field(metadata={"help": "Output LAM directory."})
    domain: str = field(default="both", metadata={"help": "Clips to learn from: human, robot or both."})
    steps: int = field(default=2000, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=32, metadata={"help": "Frame pairs per step."})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    lr_schedule: str = field(default="constant", metadata={"help": "Learning rate over the run: 'constant' or "
                                                                    "'cosine' (decays from --lr to 0 at --steps)."})
    rollout_steps: int = field(default=1, metadata={"help": "FDM steps unrolled per training sample: K > 1 reads "
                                                               "K+1 frames `gap` apart and feeds the FDM its own "
                                                               "predictions after the first step, as a rollout does "
                                                               "(pixel targets; costs ~K times a step)."})
    seed: int = field(default=0, metadata={"help": "Seed for init, sampling and quantiser noise."})
    restart_every: int = field(default=100, metadata={"help": "Restart dead codes every N steps (0: never)."})
    log_every: int = field(default=50, metadata={"help": "Write training metrics every N steps."})
    checkpoint_every: int = field(default=250, metadata={"help": "Write a resumable checkpoint every N steps."})
    eval_pairs: int = field(default=512, metadata={"help": "Frame pairs in the fixed evaluation set."})
    resume: bool = field(default=False, metadata={"help": "Continue from OUT/checkpoints/last."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing OUT directory."})

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "eval_pairs", "rollout_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be a positive integer but the value passed is {v!r}")
        if self.restart_every < 0:
            raise HRAlignError(f"`--restart-every` should be >= 0 but the value passed is {self.restart_every}")
        if not self.lr > 0:
            raise HRAlignError(f"`--lr` should be > 0 but the value passed is {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise HRAlignError(f"`--lr-schedule` should be one of {LR_SCHEDULES} but the value passed is {self.lr_schedule!r}")
        if self.resume and self.overwrite:
            raise HRAlignError("`--resume` and `--overwrite` exclude each other")


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------
class FeatureTarget:
    """Tokens of a frozen encoder (UniVLA: reconstruct DINOv2 patch features, not pixels).

    The tokens are the input of the encoder's last stage (before pooling): a ResNet's layer4 map
    (B, C, h, w) -> (B, h*w, C), a ViT's tokens (B, N, D) as they are; when that is already a
    vector, the pooled feature (B, D) is one token.
    """

    def __init__(self, spec: str) -> None:
        self.encoder = load_encoder(spec)

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
        target = FeatureTarget(str(config.target_encoder))
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
    return x, target(frames[:, 0]), target(frames[:, 1])


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
        q = model.quantizer.codebook[out.codes]
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


# ------------------------------------------------------------------------------------------------
# Run directory
# ------------------------------------------------------------------------------------------------
def _prepare_out(cfg: LAMTrainConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise HRAlignError(f"--out {out}: exists and is not a directory")
    has_content = out.is_dir() and any(out.iterdir())
    if cfg.resume:
        if not (out / CHECKPOINT_DIR / "state.json").is_file():
            raise HRAlignError(f"--resume: {out / CHECKPOINT_DIR} has no checkpoint to resume from")
    elif has_content:
        if not cfg.overwrite:
            raise HRAlignError(f"--out {out}: directory exists and is not empty; pass --resume to continue or --overwrite")
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_train_config(out: str | Path) -> dict[str, Any]:
    """``train_config.json`` of a run directory: {"model": LAMConfig dict, "train": LAMTrainConfig dict}."""
    path = Path(out) / TRAIN_CONFIG_FILE
    if not path.is_file():
        raise HRAlignError(f"{path}: not found; {out} is not a `hralign lam train` run directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HRAlignError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "model" not in data or "train" not in data:
        raise HRAlignError(f"{path}: expected keys 'model' and 'train'")
    return data


def config_for_pairs(pairs_path: str, domain: str, **model_options: Any) -> LAMConfig:
    """A :class:`LAMConfig` whose ``image_size`` defaults to the pairs file's frame size."""
    if model_options.get("image_size") is None:
        pairs = PairsFile(pairs_path)
        model_options["image_size"] = check_frame_size(pairs, resolve_domains(pairs, domain), None)
    return LAMConfig(**model_options)


def learning_rate(cfg: LAMTrainConfig, step: int) -> float:
    """Learning rate of the update after ``step`` updates: a function of the step only, so --resume
    continues the schedule exactly (cosine: half a cosine from ``lr`` at step 0 to 0 at ``steps``)."""
    if cfg.lr_schedule == "cosine":
        return float(cfg.lr * 0.5 * (1.0 + np.cos(np.pi * min(step, cfg.steps) / cfg.steps)))
    return float(cfg.lr)


def _save_checkpoint(out: Path, model: LatentActionModel, opt: torch.optim.Optimizer, step: int) -> None:
    with atomic_dir(out / CHECKPOINT_DIR) as tmp:
        save_state(model, tmp / "model.safetensors")
        torch.save(opt.state_dict(), tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")


def _load_checkpoint(out: Path, model: LatentActionModel, opt: torch.optim.Optimizer) -> int:
    ck = out / CHECKPOINT_DIR
    load_state(model, ck / "model.safetensors")
    opt.load_state_dict(torch.load(ck / "optim.pt", map_location="cpu", weights_only=True))
    return int(json.loads((ck / "state.json").read_text(encoding="utf-8"))["step"])


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (they will be logged again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    write_text_atomic(path, "".join(ln + "\n" for ln in keep))


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------
def train_lam(model_config: LAMConfig, cfg: LAMTrainConfig, progress: bool = True,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a LAM and write it to ``cfg.out``; returns the final evaluation (see :func:`evaluate_lam`)."""
    out = _prepare_out(cfg)
    if cfg.resume:
        saved = read_train_config(out)
        saved_model = LAMConfig.from_dict(saved["model"], source=str(out / TRAIN_CONFIG_FILE))
        # the checkpoint's architecture and data must be what the run was started with
        mine, theirs = model_config.to_dict(), saved_model.to_dict()
        diff = [k for k in theirs if k not in ("target_tokens", "target_token_dim") and mine[k] != theirs[k]]
        diff += [k for k in RESUME_FIXED if saved["train"].get(k) != getattr(cfg, k)]
        if diff:
            was = {**theirs, **saved["train"]}
            shown = ", ".join(f"--{k.replace('_', '-')} {was[k]!r}" for k in diff)
            raise HRAlignError(f"--resume: the run in {out} used {shown}; this call differs (drop those options "
                               "or start a new --out)")
        model_config = saved_model
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
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    write_text_atomic(out / TRAIN_CONFIG_FILE, json.dumps({"model": model_config.to_dict(), "train": asdict(cfg)}, indent=2) + "\n")
    metrics = out / METRICS_FILE
    step = 0
    if cfg.resume:
        step = _load_checkpoint(out, model, opt)
        _truncate_metrics(metrics, step)
    elif metrics.exists():
        metrics.unlink()

    eval_rows = np.sort(np.random.default_rng([cfg.seed, 7]).permutation(len(data))[:cfg.eval_pairs])
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=min(step, cfg.steps), desc="lam train", unit="step", dynamic_ncols=True)
    t0 = time.time()
    window: dict[str, list] = {"loss": [], "recon": [], "copy": [], "codes": []}
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # quantiser noise and restarts, per step
        rows = rng.integers(0, len(train_data), cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        if cfg.rollout_steps > 1:
            outp = model.forward_unrolled(_sequences(model, train_data.get(rows)))
        else:
            x, cur, tgt = _batch(model, target, train_data.get(rows))
            outp = model(x, cur, tgt)
        opt.zero_grad(set_to_none=True)
        outp.loss.backward()
        opt.step()
        step += 1
        window["loss"].append(float(outp.loss.detach()))
        window["recon"].append(float(outp.recon_mse))
        window["copy"].append(float(outp.copy_mse))
        window["codes"].append(outp.codes)
        restarted = None
        if cfg.restart_every and step % cfg.restart_every == 0:
            restarted = model.quantizer.restart_dead_codes(model_config.dead_code_threshold)
        if step % cfg.log_every == 0 or step == cfg.steps:
            codes = torch.cat(window["codes"])
            rec = {"step": step, "loss": float(np.mean(window["loss"])), "recon_mse": float(np.mean(window["recon"])),
                   "copy_mse": float(np.mean(window["copy"])), "perplexity": perplexity(codes, model_config.codebook_size),
                   "perplexity_per_token": [perplexity(codes[:, j], model_config.codebook_size) for j in range(codes.shape[1])],
                   "usage_per_token": [int(torch.unique(codes[:, j]).numel()) for j in range(codes.shape[1])],
                   "elapsed_s": round(time.time() - t0, 2)}
            if model_config.target == "pixels":
                rec.update(psnr=psnr(rec["recon_mse"]), copy_psnr=psnr(rec["copy_mse"]))
            if restarted is not None:
                rec["restarted_codes"] = restarted
            _append_metrics(metrics, rec)
            window = {k: [] for k in window}
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", ppl=f"{rec['perplexity']:.2f}",
                                **({"psnr": f"{rec['psnr']:.2f}/{rec['copy_psnr']:.2f}"} if "psnr" in rec else {}))
        elif restarted is not None:
            _append_metrics(metrics, {"step": step, "restarted_codes": restarted})
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _save_checkpoint(out, model, opt, step)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    _save_checkpoint(out, model, opt, step)
    result = evaluate_lam(model, data, eval_rows, target, seed=cfg.seed)
    result.update(step=step, kind="eval")
    _append_metrics(metrics, result)
    save_lam(model, out, train={"pairs": str(cfg.pairs), "domain": cfg.domain, "steps": step, "final_eval": result})
    if log is not None:
        log(f"wrote {out / META_FILE}")
    return result
