"""The `hralign adapt` training loop: HR-Align adapter on the robot branch of a frozen encoder.

HR-Align (human->robot alignment of video-pretrained encoders) trains a small adapter with a
contrastive loss on paired human/robot clips so adapted robot features land next to the matched
human features. Its code was never released; this follows the paper's recipe (Adam, lr 1e-4,
T = 5 frames, tau = 0.1) and adds what a tool needs: caching, resumption, multi-process runs.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from hralign.adapters import attach_adapter, save_adapter, trainable_parameters
from hralign.align import distributed as D
from hralign.align.config import AdaptConfig
from hralign.align.evaluate import compare, format_table
from hralign.align.features import (AlignModel, FeatureCache, build_feature_cache, cache_key, default_cache_dir,
                                    read_units)
from hralign.align.loss import frame_matching_loss, hralign_loss
from hralign.align.pooling import FramePooling, PoolingConfig
from hralign.align.sampling import positions_to_indices, relative_positions, step_batch, step_positions
from hralign.atomic import atomic_dir, atomic_path, write_text_atomic
from hralign.encoders import load_encoder
from hralign.encoders.text import load_text_encoder
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.metrics import frame_error
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs

DEFAULT_STEPS = 300
KEEP_CHECKPOINTS = 2


@dataclass
class RunData:
    """What the loop needs to know about the pairs file (checked once, up front)."""

    pairs: PairsFile
    train: np.ndarray  # pair indices
    val: np.ndarray
    human_clip: np.ndarray  # (P,) clip of each pair
    robot_clip: np.ndarray
    task: np.ndarray  # (P,) task of each pair (from the human clip)
    human_len: np.ndarray  # (P,) units per clip: frames, or frame pairs (t, t+gap) for a LAM
    robot_len: np.ndarray
    gap: int = 0  # > 0 when the encoder reads frame pairs (x_t, x_{t+gap}) (lam: encoders)


def _load_run_data(config: AdaptConfig, world_size: int, gap: int) -> RunData:
    pairs = PairsFile(config.pairs)
    if pairs.num_pairs == 0:
        raise HRAlignError(f"{config.pairs}: /pairs is empty; adapt needs paired human/robot clips")
    for domain in ("human", "robot"):
        if domain not in pairs.domains:
            raise HRAlignError(f"{config.pairs}: has no {domain} clips; adapt needs both embodiments")
    if config.batch_size % world_size:
        raise HRAlignError(f"`--batch-size` {config.batch_size} is not divisible by the {world_size} processes")
    train, val = split_pairs(pairs, val_fraction=config.val_fraction, by=config.split_by, seed=config.seed)
    train, val = np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
    if len(train) < config.batch_size:
        raise HRAlignError(f"{config.pairs}: {len(train)} training pairs, fewer than `--batch-size` {config.batch_size}")
    if len(val) < config.batch_size:
        raise HRAlignError(f"{config.pairs}: {len(val)} validation pairs, fewer than `--batch-size` {config.batch_size}; "
                           "lower --batch-size or raise --val-fraction")
    hc, rc = pairs.pairs[:, 0], pairs.pairs[:, 1]
    hlen, rlen = pairs.clip_lengths("human")[hc] - gap, pairs.clip_lengths("robot")[rc] - gap
    short = np.flatnonzero((hlen < 1) | (rlen < 1))
    if len(short):
        raise HRAlignError(f"{config.pairs}: pair {int(short[0])} has a clip of at most {gap} frames; the LAM encoder "
                           f"needs frame pairs (t, t+{gap}) inside each clip")
    return RunData(pairs, train, val, hc, rc, pairs.clip_tasks("human")[hc], hlen, rlen, gap)


def _prepare_run_dir(config: AdaptConfig, is_main: bool) -> Path | None:
    """Create or check the run directory; returns the checkpoint to resume from (or None)."""
    out = Path(config.out)
    saved = out / "config.json"
    if config.resume:
        if not saved.exists():
            raise HRAlignError(f"`--resume`: {out} has no config.json; nothing to resume")
        try:
            previous = json.loads(saved.read_text())["config"]
        except (json.JSONDecodeError, KeyError) as e:
            raise HRAlignError(f"`--resume`: {saved} is not an hralign run config ({e})") from e
        diff = config.differences(previous)
        if diff:
            raise HRAlignError(f"`--resume`: {out} was run with a different config: {'; '.join(diff)}")
        ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
        return ckpts[-1] if ckpts else None
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise HRAlignError(f"`--out` {out} exists and is not empty; pass --resume to continue it or --overwrite")
        if is_main:
            shutil.rmtree(out)
    return None


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def _read_frames(pairs: PairsFile, domain: str, clips: np.ndarray, idx: np.ndarray, gap: int) -> torch.Tensor:
    """uint8 (B, T, [2,] H, W, 3) inputs of clips at per-clip unit indices (B, T)."""
    return torch.from_numpy(np.stack([read_units(pairs, domain, int(c), i, gap) for c, i in zip(clips, idx)]))


def _augment(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random resized crop per clip (same crop on all T frames, as R3M/HR-Align), float in [0, 1]."""
    b, t, h, w, _ = frames.shape
    out = []
    for clip in frames.permute(0, 1, 4, 2, 3):  # (T, 3, H, W)
        area = h * w * rng.uniform(0.6, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch, cw = min(h, int(round(math.sqrt(area / ratio)))), min(w, int(round(math.sqrt(area * ratio))))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(TF.resized_crop(clip, top, left, ch, cw, [h, w], antialias=True))
    return torch.stack(out).float() / 255.0  # (B, T, 3, H, W)


class Batches:
    """Builds the model inputs of a set of pairs at given relative frame positions (cached or plain)."""

    def __init__(self, data: RunData, cache: FeatureCache | None, text: torch.Tensor | None, augment: bool,
                 device: torch.device) -> None:
        self.data, self.cache, self.text, self.augment, self.device = data, cache, text, augment, device

    def __call__(self, pair_ids: np.ndarray, positions: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        d = self.data
        hidx = positions_to_indices(positions, d.human_len[pair_ids])
        ridx = positions_to_indices(positions, d.robot_len[pair_ids])
        if self.cache is not None:
            batch = self.cache.batch(d.human_clip[pair_ids], hidx, d.robot_clip[pair_ids], ridx, self.device)
        else:
            human = _read_frames(d.pairs, "human", d.human_clip[pair_ids], hidx, d.gap)
            robot = _read_frames(d.pairs, "robot", d.robot_clip[pair_ids], ridx, d.gap)
            if self.augment and rng is not None and d.gap == 0:
                human, robot = _augment(human, rng), _augment(robot, rng)
            batch = {"human": human.to(self.device), "robot": robot.to(self.device)}
        if self.text is not None:
            batch["text"] = self.text[torch.as_tensor(d.task[pair_ids])].to(self.device)
        return batch


@torch.no_grad()
def pooled_features(model: AlignModel, batches: Batches, pair_ids: np.ndarray, frames: int, chunk: int = 64,
                    with_frames: bool = False) -> tuple[np.ndarray, ...]:
    """(h, r, a) pooled features of ``pair_ids`` at evenly spaced frames (evaluation); with
    ``with_frames`` also their (N, T, D) human, frozen-robot and adapted frame features."""
    was_training = model.training
    model.eval()
    outs = []
    for lo in range(0, len(pair_ids), chunk):
        ids = pair_ids[lo:lo + chunk]
        out = model(batches(ids, relative_positions(len(ids), frames, None)), with_frames=with_frames)
        outs.append([x.float().cpu().numpy() for x in out])
    model.train(was_training)
    return tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))


def _evaluate(model: AlignModel, batches: Batches, data: RunData, config: AdaptConfig) -> dict:
    h_tr, r_tr, a_tr = pooled_features(model, batches, data.train, config.frames)
    h_va, r_va, a_va, hf, rf, af = pooled_features(model, batches, data.val, config.frames, with_frames=True)
    h, r, a = (np.concatenate(x) for x in ((h_tr, h_va), (r_tr, r_va), (a_tr, a_va)))
    ids = np.concatenate([data.train, data.val])
    n_train = len(data.train)
    metrics = compare(h, r, a, data.task[ids], val=np.arange(n_train, len(ids)), train=np.arange(n_train))
    # the per-frame view (what a policy fit on human frames reads), on the held-out pairs
    metrics["frozen"]["frame_error"] = frame_error(hf, rf)
    metrics["adapted"]["frame_error"] = frame_error(hf, af)
    with torch.no_grad():  # validation loss in batches of --batch-size, as in training
        losses = []
        hv, rv, av = (torch.from_numpy(x[n_train:]) for x in (h, r, a))
        for lo in range(0, len(data.val) - config.batch_size + 1, config.batch_size):
            sl = slice(lo, lo + config.batch_size)
            losses.append(float(hralign_loss(hv[sl], rv[sl], av[sl], config.temperature,
                                             config.frozen_negative, config.symmetric)))
    metrics["val_loss"] = float(np.mean(losses))
    return metrics


def _save_checkpoint(out: Path, step: int, trainable: dict, optimizer, scheduler, config: AdaptConfig) -> None:
    ckpt_dir = out / "checkpoints"
    state = {"step": step, "trainable": trainable, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "config": config.to_dict()}
    with atomic_path(ckpt_dir / f"step_{step:07d}.pt") as tmp:
        torch.save(state, tmp)
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines the interrupted run wrote after its last checkpoint."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _versions() -> dict:
    import peft
    import timm

    from hralign import __version__
    return {"hralign": __version__, "torch": torch.__version__, "peft": peft.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def _adapter_options(config: AdaptConfig) -> dict:
    opts = dict(config.adapter_options_dict())
    if config.placement is not None:
        opts["placement"] = config.placement
    if config.rank is not None:
        opts["r"] = config.rank
    return opts


def run_adapt(config: AdaptConfig, progress: bool = True, echo=print) -> dict:
    """Train an HR-Align adapter as described by ``config``; returns the final frozen/adapted metrics.

    Runs alone or under ``torchrun``/``accelerate launch`` (one process per device; the global
    batch is split across processes and negatives are gathered with gradients).
    """
    dist = D.init_distributed(config.device)
    try:
        return _run(config, dist, progress, echo)
    finally:
        D.shutdown(dist)


def _run(config: AdaptConfig, dist: D.DistInfo, progress: bool, echo) -> dict:
    device = dist.device
    show = progress and dist.is_main
    torch.manual_seed(config.seed)
    frozen = load_encoder(config.encoder, weights=config.weights, image_size=config.image_size,
                          trust_checkpoint=config.trust_checkpoint).to(device)
    gap = int(frozen.gap) if getattr(frozen, "frame_pairs", False) else 0
    if gap and config.augment:
        raise HRAlignError("`--augment` is not supported for frame-pair (lam:) encoders: a crop would change the motion")
    data = _load_run_data(config, dist.world_size, gap)
    adapted = attach_adapter(frozen, config.adapter, **_adapter_options(config)).to(device)
    resume_from = _prepare_run_dir(config, dist.is_main)
    D.barrier(dist)
    out = Path(config.out)
    stage = getattr(adapted, "first_adapted_stage", None)

    text = None
    text_dim = 0
    if config.pooling == "attention":
        text_encoder = load_text_encoder(config.text_encoder)
        text = text_encoder.encode(data.pairs.tasks)  # (K, E), frozen: computed once
        text_dim = text_encoder.dim
    pooling = FramePooling(PoolingConfig(config.pooling, text_dim=text_dim, feature_dim=frozen.feature_dim)).to(device)
    model = AlignModel(frozen, adapted, pooling, stage)

    use_cache = config.cache and not config.augment and stage is not None
    cache = None
    pairs_sha = sha256_file(config.pairs)  # provenance in config.json, and part of the cache key
    if use_cache:
        hc = sorted(set(data.human_clip.tolist()))
        rc = sorted(set(data.robot_clip.tolist()))
        cdir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        cfile = cdir / f"{cache_key(frozen.spec, pairs_sha, stage, hc, rc, gap)}.safetensors"
        if dist.is_main:
            cache = build_feature_cache(data.pairs, frozen, adapted, stage, hc, rc, device, cfile, gap, progress=show)
        D.barrier(dist)
        if not dist.is_main:
            cache = build_feature_cache(data.pairs, frozen, adapted, stage, hc, rc, device, cfile, gap, progress=False)
    batches = Batches(data, cache, text, config.augment, device)

    steps = config.steps or (max(1, round(config.epochs * len(data.train) / config.batch_size)) if config.epochs else DEFAULT_STEPS)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup, steps))
    start = 0
    if resume_from is not None:
        state = torch.load(resume_from, map_location=device, weights_only=True)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in state["trainable"]:
                    p.copy_(state["trainable"][n])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if dist.is_main:
            echo(f"resuming {out} from step {start} ({resume_from.name})")
    if dist.is_main:
        _trim_metrics(out / "metrics.jsonl", start)
        record = {"config": config.to_dict(), "resolved": {
            "steps": steps, "world_size": dist.world_size, "device": str(device), "stage_cut": stage,
            "path": "cached" if use_cache else "plain", "pooling": config.pooling,
            "encoder_spec": frozen.spec, "adapter_method": config.adapter,
            "trainable_parameters": int(sum(p.numel() for p in params)),
            "adapter_parameters": trainable_parameters(adapted),
            "train_pairs": int(len(data.train)), "val_pairs": int(len(data.val)),
            "pairs_sha256": pairs_sha, "seed": config.seed}, "versions": _versions()}
        write_text_atomic(out / "config.json", json.dumps(record, indent=2, default=str))

    runner = DistributedDataParallel(model, broadcast_buffers=False) if dist.enabled else model
    gather = D.gather_with_grad if dist.enabled else None
    local = config.batch_size // dist.world_size
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    metrics_file = out / "metrics.jsonl"
    model.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="adapt", disable=not show, unit="step")
    t0 = time.time()
    for step in bar:
        ids = step_batch(data.train, config.batch_size, config.seed, step)
        pos = step_positions(len(ids), config.frames, config.seed, step)
        sl = slice(dist.rank * local, (dist.rank + 1) * local)
        rng = np.random.default_rng([config.seed, 3, step, dist.rank])
        batch = batches(ids[sl], pos[sl], rng)
        with autocast:
            h, r, a, *frames = runner(batch, with_frames=config.frame_weight > 0)
        loss = hralign_loss(h, r, a, config.temperature, config.frozen_negative, config.symmetric, gather=gather)
        logs = {}
        if frames:
            frame_loss = frame_matching_loss(frames[0], frames[2])
            loss = loss + config.frame_weight * frame_loss
            logs["frame_loss"] = frame_loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip > 0 else torch.tensor(0.0)
        optimizer.step()
        scheduler.step()
        done = step + 1
        if dist.is_main:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            entry = {"step": done, "loss": loss.item(), **logs, "lr": scheduler.get_last_lr()[0],
                     "grad_norm": float(grad_norm), "elapsed_s": round(time.time() - t0, 3)}
            with open(metrics_file, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if config.eval_every and done % config.eval_every == 0 and done < steps and dist.is_main:
            ev = _evaluate(model, batches, data, config)
            with open(metrics_file, "a") as f:
                f.write(json.dumps({"step": done, "eval": ev}) + "\n")
        if config.save_every and done % config.save_every == 0 and done < steps and dist.is_main:
            trainable = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n in names}
            _save_checkpoint(out, done, trainable, optimizer, scheduler, config)
        D.barrier(dist)
    bar.close()

    if not dist.is_main:
        return {}
    final = _evaluate(model, batches, data, config)
    with atomic_dir(out / "adapter") as tmp:
        save_adapter(adapted, tmp)
    if config.pooling == "attention":
        with atomic_path(out / "pooling.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in pooling.state_dict().items()}, str(tmp))
    trainable = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n in names}
    _save_checkpoint(out, steps, trainable, optimizer, scheduler, config)
    with open(metrics_file, "a") as f:
        f.write(json.dumps({"step": steps, "eval": final}) + "\n")
    write_text_atomic(out / "eval.json", json.dumps(final, indent=2))
    echo(f"validation pairs: {len(data.val)}  (train {len(data.train)}), {steps} steps, "
         f"{'cached' if use_cache else 'plain'} path, val loss {final['val_loss']:.4f}")
    echo(format_table(final))
    echo(f"adapter written to {out / 'adapter'}")
    return final
