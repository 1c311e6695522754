"""The `hralign adapt` trainer: HR-Align adapter on the robot branch of a frozen encoder.

HR-Align (human->robot alignment of video-pretrained encoders) trains a small adapter with a
contrastive loss on paired human/robot clips so adapted robot features land next to the matched
human features. Its code was never released; this follows the paper's recipe (Adam, lr 1e-4,
T = 5 frames, tau = 0.1) and adds what a tool needs: caching, resumption, multi-process runs.

What is adapt's own lives here: its batches (pairs and frame positions as a function of
(seed, step), from the feature cache or from frames), its loss (negatives gathered across
processes with gradients), its evaluation. Devices, processes, the run directory, checkpoints,
metrics and resume are the training layer's (:mod:`hralign.train`, docs/training.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peft
import timm
import torch
from safetensors.torch import save_file

from hralign.adapters import attach_adapter, save_adapter, trainable_parameters
from hralign.align.config import RESUMABLE_FIELDS, AdaptConfig
from hralign.align.evaluate import compare, format_table
from hralign.align.features import (AlignModel, FeatureCache, build_feature_cache, cache_key, default_cache_dir,
                                    read_units)
from hralign.align.loss import frame_matching_loss, hralign_loss
from hralign.align.pooling import FramePooling, PoolingConfig
from hralign.align.sampling import positions_to_indices, relative_positions, step_batch, step_positions
from hralign.align.terms import term_losses
from hralign.atomic import atomic_dir, atomic_path, write_text_atomic
from hralign.crop import random_resized_crop
from hralign.device import Placement
from hralign.encoders import load_encoder
from hralign.encoders.text import load_text_encoder
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.metrics import frame_error
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs
from hralign.shard import current_shard
from hralign.train import Phase, Session, open_session


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


def _load_run_data(config: AdaptConfig, gap: int) -> RunData:
    pairs = PairsFile(config.pairs)
    if pairs.num_pairs == 0:
        raise HRAlignError(f"{config.pairs}: /pairs is empty; adapt needs paired human/robot clips")
    for domain in ("human", "robot"):
        if domain not in pairs.domains:
            raise HRAlignError(f"{config.pairs}: has no {domain} clips; adapt needs both embodiments")
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


def _read_frames(pairs: PairsFile, domain: str, clips: np.ndarray, idx: np.ndarray, gap: int) -> torch.Tensor:
    """uint8 (B, T, [2,] H, W, 3) inputs of clips at per-clip unit indices (B, T)."""
    return torch.from_numpy(np.stack([read_units(pairs, domain, int(c), i, gap) for c, i in zip(clips, idx)]))


AUGMENT_SCALE = (0.6, 1.0)  # area share of the random resized crop (HR-Align/R3M-style augmentation)


def _augment(frames: torch.Tensor, rngs: list[np.random.Generator]) -> torch.Tensor:
    """One random resized crop per clip (same crop on all T frames, as R3M/HR-Align), float in [0, 1];
    clip i's crop is drawn from ``rngs[i]`` (one generator per pair of the global batch)."""
    h, w = frames.shape[2:4]
    out = [random_resized_crop(clip, (h, w), AUGMENT_SCALE, rng)  # (T, 3, H, W)
           for clip, rng in zip(frames.permute(0, 1, 4, 2, 3), rngs)]
    return torch.stack(out).float() / 255.0  # (B, T, 3, H, W)


class Batches:
    """Builds the model inputs of a set of pairs at given relative frame positions (cached or plain)."""

    def __init__(self, data: RunData, cache: FeatureCache | None, text: torch.Tensor | None, augment: bool,
                 device: torch.device) -> None:
        self.data, self.cache, self.text, self.augment, self.device = data, cache, text, augment, device

    def __call__(self, pair_ids: np.ndarray, positions: np.ndarray,
                 rngs: list[np.random.Generator] | None = None) -> dict:
        d = self.data
        hidx = positions_to_indices(positions, d.human_len[pair_ids])
        ridx = positions_to_indices(positions, d.robot_len[pair_ids])
        if self.cache is not None:
            batch = self.cache.batch(d.human_clip[pair_ids], hidx, d.robot_clip[pair_ids], ridx, self.device)
        else:
            human = _read_frames(d.pairs, "human", d.human_clip[pair_ids], hidx, d.gap)
            robot = _read_frames(d.pairs, "robot", d.robot_clip[pair_ids], ridx, d.gap)
            if self.augment and rngs is not None and d.gap == 0:
                human, robot = _augment(human, rngs), _augment(robot, rngs)
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
    batch is split across processes and negatives are gathered with gradients). Other processes
    than the main one return ``{}``.
    """
    session = open_session(config, config.out, "adapt", config.to_dict(), RESUMABLE_FIELDS)
    result = _run(config, session, progress, echo)
    session.finish()
    return result


def _run(config: AdaptConfig, session: Session, progress: bool, echo) -> dict:
    device = session.device
    show = progress and session.is_main
    torch.manual_seed(config.seed)
    frozen = load_encoder(config.encoder, weights=config.weights, image_size=config.image_size,
                          trust_checkpoint=config.trust_checkpoint).to(device)
    gap = int(frozen.gap) if getattr(frozen, "frame_pairs", False) else 0
    if gap and config.augment:
        raise HRAlignError("`--augment` is not supported for frame-pair (lam:) encoders: a crop would change the motion")
    data = _load_run_data(config, gap)
    adapted = attach_adapter(frozen, config.method, **_adapter_options(config)).to(device)
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
    pairs_sha = sha256_file(config.pairs)  # provenance in run.json, and part of the cache key
    if use_cache:
        hc = sorted(set(data.human_clip.tolist()))
        rc = sorted(set(data.robot_clip.tolist()))
        cdir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        cfile = cdir / f"{cache_key(frozen.spec, pairs_sha, stage, hc, rc, gap)}.safetensors"
        # fp32 whatever --precision: the cache key has no precision, and the cache is computed once
        cache = build_feature_cache(data.pairs, frozen, adapted, stage, hc, rc, Placement(device, "fp32"), cfile, gap,
                                    progress=show, shard=current_shard())
    batches = Batches(data, cache, text, config.augment, device)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    session.begin({"resolved": {
        "stage_cut": stage, "path": "cached" if use_cache else "plain", "pooling": config.pooling,
        "encoder_spec": frozen.spec, "adapter_method": config.method,
        "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "adapter_parameters": trainable_parameters(adapted),
        "train_pairs": int(len(data.train)), "val_pairs": int(len(data.val)), "pairs_sha256": pairs_sha},
        "library_versions": {"peft": peft.__version__, "timm": timm.__version__}})
    if session.resumed_from is not None and session.is_main:
        echo(f"resuming {out} from step {session.resumed_from}")

    terms, term_options = config.terms_dict(), config.term_options_dict()
    with_frames = config.frame_weight > 0 or any(w > 0 for w in terms.values())

    def forward(runner, step: int):
        ids = step_batch(data.train, config.batch_size, config.seed, step)  # the global batch: f(seed, step)
        pos = step_positions(len(ids), config.frames, config.seed, step)
        rows = session.local_rows(np.arange(len(ids)))
        rngs = [np.random.default_rng([config.seed, 3, step, int(i)]) for i in rows] if config.augment else None
        h, r, a, *frames = runner(batches(ids[rows], pos[rows], rngs), with_frames=with_frames)
        loss = hralign_loss(h, r, a, config.temperature, config.frozen_negative, config.symmetric, gather=session.gather)
        logs = {}
        if config.frame_weight > 0:
            frame_loss = frame_matching_loss(frames[0], frames[2])
            loss = loss + config.frame_weight * frame_loss
            logs["frame_loss"] = frame_loss.item()
        extra = term_losses(terms, term_options, frames[0], frames[2]) if frames else {}
        for name, value in extra.items():  # --terms, each weighted (hralign.align.terms)
            loss = loss + terms[name] * value
            logs[f"{name}_loss"] = value.item()
        return loss, logs

    def load_tensors(saved: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in saved:
                    p.copy_(saved[n])

    session.run_phase(Phase(
        "train", config.steps, model, forward, weight_decay=config.weight_decay, grad_clip=config.grad_clip,
        evaluate=lambda step: _evaluate(model, batches, data, config),
        tensors=lambda: {n: p.detach() for n, p in model.named_parameters() if n in trainable},
        load_tensors=load_tensors), progress=progress)

    if not session.is_main:
        return {}
    final = _evaluate(model, batches, data, config)
    with atomic_dir(out / "adapter") as tmp:
        save_adapter(adapted, tmp)
    if config.pooling == "attention":
        with atomic_path(out / "pooling.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in pooling.state_dict().items()}, str(tmp))
    session.log({"step": config.steps, "eval": final})
    write_text_atomic(out / "eval.json", json.dumps(final, indent=2))
    echo(f"validation pairs: {len(data.val)}  (train {len(data.train)}), {config.steps} steps, "
         f"{'cached' if use_cache else 'plain'} path, val loss {final['val_loss']:.4f}")
    echo(format_table(final))
    echo(f"adapter written to {out / 'adapter'}")
    return final
