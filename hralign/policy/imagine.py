"""Instruction following by imagination: the latent policy proposes, the LAM world model renders.

IGOR (Chen et al., 2024) follows instructions by alternating its latent-action policy and its
world model: from one start frame, the policy reads the frame and the instruction and proposes a
latent action, the world model renders the next frame, and the loop continues on the rendered
frame. Several instructions from the same start frame show whether the policy's latent actions
(and the world model) make the scene move differently per instruction.

Lives in ``policy/`` because it needs both rooms: the LAM (``hralign.lam``, upstream) and the
latent policy (this room); ``lam/`` may not import ``policy/``.

Context frames: the policy was trained on features of frames t-k+1..t one *frame* apart, but the
world model advances ``gap`` frames per step, so in a rollout the previous context frame is the
previous rendered frame (``gap`` frames back; clamped to the start frame at step 0, as in
training at the clip start). This is an approximation the summary mentions.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.lam.io import load_lam
from hralign.lam.labels import read_labels
from hralign.lam.model import LatentActionModel
from hralign.lam.rollout import rollout, start_frames
from hralign.lam.transfer import check_clip
from hralign.pairs import PairsFile
from hralign.policy.io import EncoderSource, check_feature_dim, load_policy
from hralign.policy.latent import LatentPolicy
from hralign.policy.train import instruction_table

MAX_STEPS = 64  # a guard against typos (--steps 10000): each step is a policy + FDM pass per instruction


@dataclass
class Imagination:
    """Rollouts of several instructions from one start frame."""

    tasks: list[int]  # task index per row
    instructions: list[str]
    frames: np.ndarray  # uint8 (R, S+1, H, W, 3); frames[:, 0] is the start frame
    codes: np.ndarray  # int64 (R, S, tokens): the codes the policy proposed
    gap: int
    real: np.ndarray | None  # uint8 (S'+1, H, W, 3): the clip itself at 0, gap, ... (S' <= S)
    clip_task: int
    errors: dict[str, float]  # own instruction vs the real clip: MSE of imagined / copy-start


def resolve_lam_for_policy(meta: dict[str, Any], lam: str | os.PathLike | None, where: str) -> str:
    """The LAM directory: ``lam`` if given, else the one recorded in the policy's labels.h5."""
    if lam is not None:
        s = os.fspath(lam)
        return s[len("lam:"):] if s.startswith("lam:") else s
    labels = meta.get("data", {}).get("labels")
    if labels and Path(labels).is_file():
        recorded = str(read_labels(labels)["attrs"].get("lam", ""))
        if recorded and Path(recorded).is_dir():
            return recorded
    raise HRAlignError(f"{where}: no LAM directory recorded with this policy's labels; pass --lam DIR "
                       "(the LAM whose codes the policy predicts)")


def check_policy_fits_lam(policy: LatentPolicy, meta: dict[str, Any], lam: LatentActionModel, where: str) -> None:
    """The policy must predict this LAM's codes: same tokens, codebook size and gap."""
    cfg = lam.config
    tokens, size = policy.dims["num_tokens"], policy.dims["codebook_size"]
    if (tokens, size) != (cfg.tokens, cfg.codebook_size):
        raise HRAlignError(f"{where}: the policy predicts {tokens} tokens of {size} codes but the LAM has "
                           f"{cfg.tokens} tokens of {cfg.codebook_size}; pass the LAM it was labelled with")
    gap = meta.get("data", {}).get("labels_gap")
    if gap is not None and int(gap) != cfg.gap:
        raise HRAlignError(f"{where}: the policy's labels have gap {gap} but the LAM has gap {cfg.gap}")


@torch.no_grad()
def imagine(policy: LatentPolicy, encoder: torch.nn.Module, lam: LatentActionModel, start: np.ndarray,
            instructions: torch.Tensor | None, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed loop policy -> world model from one start frame, one row per instruction embedding.

    ``start``: uint8 (H, W, 3); ``instructions``: (R, E) embeddings (None: a policy without
    language, one row). Returns (uint8 frames (R, S+1, H, W, 3), codes (R, S, tokens)).
    """
    rows = 1 if instructions is None else int(instructions.shape[0])
    k = policy.config.context_frames
    x = start_frames(np.repeat(start[None], rows, 0), lam.config.image_size)  # (R, 3, H, W) in [0, 1]
    history = [encoder(x).float()]  # features per rendered frame, (R, D) each
    frames, codes = [x], []
    for _ in range(steps):
        ctx = [history[max(len(history) - k + i, 0)] for i in range(k)]  # oldest first, clamped at the start
        batch = {"features": torch.cat(ctx, 1)}
        if instructions is not None:
            batch["instruction"] = instructions
        c = policy.predict_tokens(batch)  # (R, tokens)
        x = rollout(lam, x, c[:, None]).frames[:, 1]
        frames.append(x)
        codes.append(c)
        history.append(encoder(x).float())
    video = torch.stack(frames, 1)  # (R, S+1, 3, H, W)
    u8 = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    return u8, torch.stack(codes, 1).cpu().numpy()


def imagine_clip(policy_dir: str | os.PathLike, pairs_path: str | os.PathLike, clip: tuple[str, int], steps: int,
                 tasks: Sequence[int] | None = None, lam: str | os.PathLike | None = None) -> Imagination:
    """``hralign lam imagine``: load policy + its encoder + the LAM, roll out ``tasks`` from the clip's first frame.

    ``tasks``: task indices of the pairs file (default: every task, the clip's own first).
    Also scores the clip's own instruction against the clip's real frames 0, gap, 2 gap, ...
    next to the copy-start-frame baseline.
    """
    policy, meta = load_policy(policy_dir)
    where = str(Path(policy_dir) / "config.json")
    if not isinstance(policy, LatentPolicy):
        raise HRAlignError(f"--policy {policy_dir}: a {policy.name!r} policy proposes no latent actions; train one "
                           "with `hralign policy train --lam DIR` (or --labels)")
    model = load_lam(resolve_lam_for_policy(meta, lam, where))
    check_policy_fits_lam(policy, meta, model, where)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise HRAlignError(f"--steps should be an integer in 1..{MAX_STEPS} but the value passed is {steps!r}")
    pairs = PairsFile(pairs_path)
    length = check_clip(pairs, clip[0], clip[1], model.config.image_size, "--clip")
    rec = meta.get("encoder", {}).get("source")
    if not isinstance(rec, dict) or "encoder" not in rec:
        raise HRAlignError(f"{where}: no recorded encoder")
    source = EncoderSource(**rec)
    encoder = source.robot_encoder() if clip[0] == "robot" else source.human_encoder()
    check_feature_dim(meta, encoder, where)
    clip_task = int(pairs.clip_tasks(clip[0])[clip[1]])
    if tasks is None:
        tasks = [clip_task] + [t for t in range(pairs.num_tasks) if t != clip_task]
    tasks = [int(t) for t in tasks]
    bad = [t for t in tasks if not 0 <= t < pairs.num_tasks]
    if bad or not tasks:
        raise HRAlignError(f"--tasks {tasks}: task indices should lie in 0..{pairs.num_tasks - 1} ({pairs.path})")
    table = instruction_table(pairs.tasks, policy.config.instruction)
    if table is not None and list(pairs.tasks) != list(meta.get("tasks", pairs.tasks)):
        warnings.warn(f"{pairs.path}: task instructions differ from the policy's training file", stacklevel=2)
    emb = None if table is None else table[torch.as_tensor(tasks)]
    start = pairs.read_clip(clip[0], clip[1], [0])[0]
    frames, codes = imagine(policy, encoder, model, start, emb, steps)
    if emb is None:  # no language: one row, whatever the tasks
        tasks = [clip_task]
    gap = model.config.gap
    idx = np.arange(steps + 1) * gap
    idx = idx[idx < length]
    real = pairs.read_clip(clip[0], clip[1], idx) if len(idx) > 1 else None
    errors: dict[str, float] = {}
    if real is not None and tasks[0] == clip_task:
        n = len(idx)
        own = frames[0, 1:n].astype(np.float32) / 255
        ref = real[1:].astype(np.float32) / 255
        errors = {"imagined_mse": float(((own - ref) ** 2).mean()),
                  "copy_start_mse": float(((ref - real[:1].astype(np.float32) / 255) ** 2).mean()),
                  "compared_steps": n - 1}
    return Imagination(tasks, [pairs.tasks[t] for t in tasks], frames, codes, gap, real, clip_task, errors)
