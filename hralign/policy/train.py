"""``train_frame_policy``: features once, then the latent-token stage (latent policy) and the action stage.

Each stage is a phase of the training layer (:mod:`hralign.train`, docs/training.md) over cached
features: what is the policy's own lives here (its batches, its stages); the layer owns devices,
processes, the run directory, checkpoints, metrics and resume. Global batches are drawn by a
generator seeded with (seed, stage, step) and split across processes, so a resumed run draws
exactly the batches the uninterrupted run would have drawn, the same seed gives the same weights
on CPU, and several processes give the weights of one (BatchNorm over the global batch).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.pairs import PairsFile
from hralign.policy.config import LatentPolicyConfig, TrainConfig
from hralign.policy.data import (
    action_table,
    batch_of,
    check_robot_actions,
    clip_split,
    concat_tables,
    pick_fraction,
    token_table,
)
from hralign.policy.features import features_by_clip
from hralign.policy.io import EncoderSource, save_policy
from hralign.policy.labels import TokenLabels, label_with_lam, load_token_labels
from hralign.policy.registry import kind_of, make_policy
from hralign.train import Phase, Session, open_session

STAGES = ("latent", "action")
# Besides the shared resumable fields: the latent stage may be lengthened too.
RESUMABLE_FIELDS = ("latent_steps",)


def instruction_table(tasks: list[str], enabled: bool) -> torch.Tensor | None:
    """Frozen MiniLM embeddings of the task instructions [K, 384] (None when not used)."""
    if not enabled:
        return None
    from hralign.encoders.text import load_text_encoder

    return load_text_encoder().encode(list(tasks)).float()


def _batch_rows(n: int, batch_size: int, seed: int, stage: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + stage * 100_003 + int(step))
    return torch.randint(0, n, (max(2, min(batch_size, n)),), generator=g)


def _stage_phase(policy: nn.Module, stage: str, table: dict[str, torch.Tensor], instructions: torch.Tensor | None,
                 cfg: TrainConfig, steps: int, session: Session) -> Phase:
    """The phase of one stage ("latent" or "action") on a ready feature ``table``."""
    n = int(next(iter(table.values())).shape[0])
    if n < 2:
        raise HRAlignError(f"{stage} stage: {n} training frame(s); need at least 2 (BatchNorm), add clips or raise "
                           "--robot-fraction")
    sid = STAGES.index(stage)

    def forward(model: nn.Module, step: int):
        rows = session.local_rows(_batch_rows(n, cfg.batch_size, cfg.seed, sid, step))  # this process's share
        batch = {k: v.to(session.device) for k, v in batch_of(table, rows, instructions).items()}
        if stage == "latent":
            batch.pop("action", None)
        return model(batch, mean=session.masked_mean)  # future loss: masked mean over the global batch

    return Phase(stage, steps, policy, forward, weight_decay=cfg.weight_decay, record={"stage": stage})


def run_stage(policy: nn.Module, stage: str, table: dict[str, torch.Tensor], instructions: torch.Tensor | None,
              cfg: TrainConfig, steps: int, out: Path, progress: bool = True,
              evaluate: Callable[[int], dict[str, Any]] | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Train one stage of ``policy`` on a ready feature ``table`` into run directory ``out`` (replaced);
    returns its last logged figures. The MetaWorld evaluation (``hralign.sim``) trains its BC
    policies with it: the same loop as ``hralign policy train``. ``evaluate(step)`` / ``stop()`` run
    every ``cfg.eval_every`` steps (held-out early stopping, :mod:`hralign.train.early_stop`)."""
    cfg = dataclasses.replace(cfg, steps=steps, resume=False, overwrite=True)
    session = open_session(cfg, out, "policy-stage", {"stage": stage, "train": cfg.to_dict()},
                           find_unused_parameters=True)
    session.begin()
    phase = dataclasses.replace(_stage_phase(policy, stage, table, instructions, cfg, steps, session),
                                evaluate=evaluate, stop=stop)
    logs = session.run_phase(phase, STAGES.index(stage), progress)
    session.finish()
    return logs


def train_frame_policy(pairs_path: str | Path, source: EncoderSource, out: str | Path, config: Any,
                       train: TrainConfig | None = None, labels: str | Path | TokenLabels | None = None,
                       lam: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                       progress: bool = True) -> dict[str, Any]:
    """Train a per-frame policy kind (BC, the latent policy + action head, a plug-in kind) into ``out``.

    The ``train`` hook of every kind registered without one (:mod:`hralign.policy.registry`); callers use
    :func:`hralign.policy.train_policy`, which picks the kind's hook.

    The parameters are :func:`hralign.policy.train_policy`'s; ``config`` is a per-frame kind's (a latent
    policy needs ``labels``, labels.h5 / TokenLabels, or ``lam``, a LAM dir).

    Returns a summary dict (clip counts, final losses, output path); ``{}`` on the processes other
    than the main one under a launcher.
    """
    train = train or TrainConfig()
    out = Path(out)
    latent = _wants_tokens(config, labels, lam)
    pairs = PairsFile(pairs_path)
    check_robot_actions(pairs, getattr(config, "head", kind_of(config).name))
    train = dataclasses.replace(train, resume=train.resume or resume, overwrite=train.overwrite or overwrite)
    run = {"pairs": str(Path(pairs_path).resolve()), "pairs_sha256": sha256_file(pairs_path),
           "encoder": source.to_dict(), "kind": kind_of(config).name, "config": config.to_dict(),
           "train": train.to_dict(),
           "labels": None if labels is None or isinstance(labels, TokenLabels) else str(Path(labels).resolve()),
           "lam": None if lam is None else str(Path(lam).resolve())}
    session = open_session(train, out, "policy", run, RESUMABLE_FIELDS, find_unused_parameters=True)
    train_clips, held, action_clips = _training_clips(pairs, train)

    robot_enc = source.robot_encoder()
    k, fut = _frames(config), int(getattr(config, "future_features", 0))
    instructions = instruction_table(pairs.tasks, bool(getattr(config, "instruction", False)))

    session.begin()  # checks passed: the run directory is created (labels may be written into it)
    token_labels = _token_labels(labels, lam, pairs, pairs_path, out, run, progress) if latent else None
    robot_clips = set(action_clips.tolist())
    if token_labels is not None:
        robot_clips |= set(token_labels.select("robot", train_clips["robot"])[0].tolist())
    robot_feats = features_by_clip(robot_enc, pairs, "robot", robot_clips, progress=progress)
    table = action_table(pairs, robot_feats, action_clips, k, bool(getattr(config, "proprio", True)), fut)
    dims = {"feature_dim": int(robot_enc.feature_dim), "action_dim": int(table["action"].shape[1]),
            "state_dim": int(table["state"].shape[1]) if "state" in table else 0,
            "instruction_dim": int(instructions.shape[1]) if instructions is not None else 0}

    torch.manual_seed(train.seed)
    counts: dict[str, Any] = {"robot_action_clips": len(action_clips), "robot_action_frames": int(table["action"].shape[0]),
                              "train_clips": {d: len(v) for d, v in train_clips.items()},
                              "heldout_clips": {d: len(v) for d, v in held.items()}}
    stages: list[tuple[str, int, dict[str, torch.Tensor]]] = []
    fut_table = table
    if token_labels is not None:
        tok_all = _token_tables(token_labels, source, robot_enc, robot_feats, pairs, train_clips, k, fut, counts,
                                progress)
        dims.update(num_tokens=token_labels.num_tokens, codebook_size=token_labels.codebook_size)
        stages.append(("latent", train.latent_steps, tok_all))
        fut_table = tok_all
    policy: nn.Module = make_policy(config, dims)
    _fit_statistics(policy, table, fut_table, fut, pairs)
    stages.append(("action", train.steps, table))
    finals = _run_stages(policy, stages, config, instructions, train, session, progress)
    if not session.is_main:
        session.finish()
        return {}
    policy.cpu()
    meta = _policy_meta(source, robot_enc, dims, train, instructions, pairs, run, action_clips, held, token_labels,
                        counts, finals)
    save_policy(policy, out, meta)
    session.finish()
    return {"out": str(out), "kind": policy.name, **counts, "final": finals}


def _wants_tokens(config: Any, labels: Any, lam: Any) -> bool:
    """Whether the latent-token stage runs: the config has one (the latent policy), which then needs labels."""
    latent = isinstance(config, LatentPolicyConfig)
    if latent and labels is None and lam is None:
        raise HRAlignError("a latent policy needs LAM labels: pass --labels labels.h5 or --lam DIR")
    if not latent and (labels is not None or lam is not None):
        raise HRAlignError("--labels/--lam train a latent policy; drop them for the BC baseline")
    if latent and config.head == "bc":
        raise HRAlignError("--head bc is the R3M baseline on features alone; with --lam/--labels use --head "
                           "continuous or binned")
    return latent


def _frames(config: Any) -> int:
    """Frames of features per row (``context_frames``; 1 for a config without the field)."""
    return int(getattr(config, "context_frames", 1))


def _training_clips(pairs: PairsFile, train: TrainConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                                    np.ndarray]:
    """(training clips, held-out clips, robot clips whose actions train) per the split and robot fraction."""
    train_clips, held = clip_split(pairs, train.val_fraction, train.split_by, train.seed)
    if "robot" not in train_clips or not len(train_clips["robot"]):
        raise HRAlignError(f"{pairs.path}: no training robot clips after the split")
    return train_clips, held, pick_fraction(train_clips["robot"], train.robot_fraction, train.seed)


def _token_labels(labels: Any, lam: Any, pairs: PairsFile, pairs_path: str | Path, out: Path, run: dict[str, Any],
                  progress: bool) -> TokenLabels:
    """The LAM labels of the latent stage: given, read from labels.h5, or written by labelling with ``lam``."""
    if isinstance(labels, TokenLabels):
        labels.check_against(pairs)
        return labels
    path = labels if labels is not None else label_with_lam(lam, pairs_path, out / "labels.h5", progress)
    if labels is None:
        run["labels_written"] = str(out / "labels.h5")
    return load_token_labels(path, pairs)


def _token_tables(token_labels: TokenLabels, source: EncoderSource, robot_enc: nn.Module,
                  robot_feats: dict[int, torch.Tensor], pairs: PairsFile, train_clips: dict[str, np.ndarray], k: int,
                  fut: int, counts: dict[str, Any], progress: bool) -> dict[str, torch.Tensor]:
    """One table of every labelled training frame (human clips through the frozen base, robot clips adapted)."""
    human_enc = source.human_encoder(robot_enc) if "human" in token_labels.domains else None
    if human_enc is not None and int(human_enc.feature_dim) != int(robot_enc.feature_dim):
        raise HRAlignError(f"human encoder gives {human_enc.feature_dim}-d features, robot encoder "
                           f"{robot_enc.feature_dim}-d; they must agree")
    tok_tables = []
    for d, enc, feats in (("human", human_enc, None), ("robot", robot_enc, robot_feats)):
        if d not in token_labels.domains or d not in train_clips:
            continue
        rows = token_labels.select(d, train_clips[d])
        if not len(rows[0]):
            continue
        if feats is None:
            feats = features_by_clip(enc, pairs, d, np.unique(rows[0]), progress=progress)
        tok_tables.append(token_table(pairs, d, feats, rows, k, fut))
        counts[f"token_rows_{d}"] = int(len(rows[0]))
    if not tok_tables:
        raise HRAlignError(f"{token_labels.source}: no labelled frames in the training clips")
    return concat_tables(tok_tables)


def _fit_statistics(policy: nn.Module, table: dict[str, torch.Tensor], fut_table: dict[str, torch.Tensor], fut: int,
                    pairs: PairsFile) -> None:
    """The head's action statistics, and the future targets' when the auxiliary is on."""
    policy.fit_head(table["action"])
    if fut:
        valid = fut_table["future_valid"] > 0
        if not bool(valid.any()):
            raise HRAlignError(f"--future-features {fut}: no training frame has a frame {fut} steps later in its clip "
                               f"(clips of {int(pairs.clip_lengths('robot').max())} frames at most)")
        policy.fit_future(fut_table["future"][valid])


def _run_stages(policy: nn.Module, stages: list[tuple[str, int, dict[str, torch.Tensor]]], config: Any,
                instructions: torch.Tensor | None, train: TrainConfig, session: Session,
                progress: bool) -> dict[str, dict[str, float]]:
    """Each stage as a phase of ``session``; the latent trunk frozen for the action stage unless configured not to."""
    policy.to(session.device)
    finals: dict[str, dict[str, float]] = {}
    for stage, steps, tab in stages:
        if stage == "action" and hasattr(policy, "freeze_trunk"):
            policy.freeze_trunk(not config.finetune_trunk)
        if steps == 0:
            continue
        logs = session.run_phase(_stage_phase(policy, stage, tab, instructions, train, steps, session),
                                 STAGES.index(stage), progress)
        if logs:
            finals[stage] = logs
    return finals


def _policy_meta(source: EncoderSource, robot_enc: nn.Module, dims: dict[str, int], train: TrainConfig,
                 instructions: torch.Tensor | None, pairs: PairsFile, run: dict[str, Any], action_clips: np.ndarray,
                 held: dict[str, np.ndarray], token_labels: TokenLabels | None, counts: dict[str, Any],
                 finals: dict[str, Any]) -> dict[str, Any]:
    """What config.json records beside the policy's kind, config and dims."""
    enc_meta = {"source": source.to_dict(), "name": getattr(robot_enc, "name", "?"), "spec": robot_enc.spec,
                "feature_dim": dims["feature_dim"], "image_size": int(robot_enc.image_size)}
    return {"encoder": enc_meta, "train": train.to_dict(),
            "text_encoder": "minilm" if instructions is not None else None,
            "tasks": list(pairs.tasks),
            "data": {"pairs": run["pairs"], "pairs_sha256": run["pairs_sha256"],
                     "robot_action_clips": action_clips.tolist(),
                     "heldout_clips": {d: v.tolist() for d, v in held.items()},
                     "labels": run.get("labels_written") or run["labels"],
                     "labels_gap": token_labels.gap if token_labels is not None else None},
            "counts": counts, "final": finals}
