"""Training the GR-1-style policy: stage 1 on human-view clips (future only), stage 2 on robot demos.

Structured as hralign's shared training layer (``hralign/train/``, docs/design.md) wants a trainer:

* :func:`make_batch` - the batch of a (stage, seed, step), drawn by a generator seeded with all three,
  so a resumed run draws exactly the batches the uninterrupted run would have drawn;
* :func:`gr1_forward` - ``forward -> (loss, logs)``;
* :func:`evaluate_windows` - the evaluation (held-out action error and future-feature cosine);
* :func:`extra_state` / :func:`load_extra_state` - what else a checkpoint must hold (torch's RNG,
  which dropout draws from).

:func:`run_stages` is a small loop of its own **for now: the part to move onto hralign/train/ once it
lands** (devices, checkpoints, metrics and the resume rule then come from the layer). Its checkpoints
are atomic (``checkpoints/last.pt``: stage, step, model, optimiser, RNG) and resume exactly.

Features of every clip are computed once by the frozen encoder (robot clips through the adapted
encoder, human clips through the frozen base, as HR-Align adapts only the robot branch) and cached.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hralign.atomic import atomic_path, write_text_atomic
from hralign.device import Placement
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.pairs import PairsFile
from hralign.policy.data import check_robot_actions, clip_split, pick_fraction
from hralign.policy.features import encode_clips
from hralign.policy.gr1.config import GR1Config, GR1TrainConfig
from hralign.policy.gr1.model import GR1Policy
from hralign.policy.io import CONFIG_FILE, EncoderSource, save_policy

CHECKPOINT = "checkpoints/last.pt"
METRICS = "metrics.jsonl"
STAGES = ("pretrain", "action")  # stage 1 (human video, future only), stage 2 (robot demos)


@dataclass
class ClipData:
    """Cached per-clip inputs of one domain: features [T, C, D], optional actions [T, A] and state [T, S]."""

    domain: str
    features: dict[int, torch.Tensor]
    tasks: np.ndarray  # task id of every clip of the domain
    actions: dict[int, torch.Tensor] = field(default_factory=dict)
    state: dict[int, torch.Tensor] = field(default_factory=dict)


def instruction_embeddings(tasks: list[str], enabled: bool) -> torch.Tensor | None:
    """Frozen MiniLM embeddings of the task instructions [K, 384] (None when not used)."""
    if not enabled:
        return None
    from hralign.encoders.text import load_text_encoder

    return load_text_encoder().encode(list(tasks)).float()


def windows(data: ClipData, clips: np.ndarray, history: int) -> np.ndarray:
    """Every (clip, start) of a full window of ``history`` frames: int64 [N, 2].

    A clip shorter than ``history`` is a user error (one line naming the clip), not silently skipped.
    """
    rows = []
    for c in np.asarray(clips, dtype=np.int64):
        t = int(data.features[int(c)].shape[0])
        if t < history:
            raise HRAlignError(f"--history {history}: {data.domain} clip {int(c)} has only {t} frames; the history "
                               f"must not be longer than any training clip (use --history {t} or less)")
        rows.extend((int(c), s) for s in range(t - history + 1))
    if not rows:
        raise HRAlignError(f"no {data.domain} clips to train on")
    return np.asarray(rows, dtype=np.int64)


def window_batch(data: ClipData, rows: np.ndarray, n: int, config: GR1Config, instructions: torch.Tensor | None,
                 with_actions: bool) -> dict[str, torch.Tensor]:
    """Windows of ``n`` steps starting at ``rows`` [(clip, start)] as a GR-1 batch (see the model's docstring).

    Private-ish helper: ``rows`` come from :func:`windows` (or evaluation), already checked.
    """
    k, delta = config.chunk, config.future_delta
    feats, fut, fvalid, state, act, pad, task = [], [], [], [], [], [], []
    steps = torch.arange(n)
    for c, s in rows:
        c, s = int(c), int(s)
        f = data.features[c]
        last = int(f.shape[0]) - 1
        t = s + steps  # (n,)
        feats.append(f[t])
        ft = t + delta
        fut.append(f[ft.clamp_max(last)])
        fvalid.append((ft <= last).float())
        task.append(int(data.tasks[int(c)]))
        if data.state and config.proprio:
            state.append(data.state[int(c)][t])
        if with_actions:
            a = data.actions[int(c)]
            at = t[:, None] + torch.arange(k)[None, :]  # (n, k)
            act.append(a[at.clamp_max(last)])
            pad.append(at > last)
    batch = {"features": torch.stack(feats), "future": torch.stack(fut), "future_valid": torch.stack(fvalid)}
    if state:
        batch["state"] = torch.stack(state)
    if with_actions:
        batch["action"], batch["action_is_pad"] = torch.stack(act), torch.stack(pad)
    if instructions is not None:
        batch["instruction"] = instructions[torch.as_tensor(task)]
    return batch


def make_batch(stage: str, data: ClipData, rows: np.ndarray, config: GR1Config, train: GR1TrainConfig,
               instructions: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
    """The batch of (``train.seed``, ``stage``, ``step``): the same on every run and on resume."""
    g = torch.Generator().manual_seed(int(train.seed) * 1_000_003 + STAGES.index(stage) * 100_003 + int(step))
    pick = torch.randint(0, len(rows), (min(train.batch_size, max(2, len(rows))),), generator=g).numpy()
    return window_batch(data, rows[pick], config.history, config, instructions, with_actions=stage == "action")


def gr1_forward(policy: GR1Policy, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The trainer's forward: loss and logs (stage 1 batches carry no actions, so only the future loss)."""
    return policy(batch)


def extra_state() -> dict[str, Any]:
    """What a checkpoint holds beyond model and optimiser: torch's CPU RNG (dropout draws from it)."""
    return {"rng": torch.get_rng_state()}


def load_extra_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng"])


@torch.no_grad()
def evaluate_windows(policy: GR1Policy, data: ClipData, clips: np.ndarray, instructions: torch.Tensor | None,
                     with_actions: bool = True) -> dict[str, Any]:
    """Per-frame held-out metrics: the action at t from the history up to t (first entry of the chunk, no
    ensembling) against the recorded action, and the cosine between predicted and true features of t+delta.

    A clip shorter than H is evaluated with one window of its length (causality makes step t of a window
    starting at the clip start equal to a prediction from the history 0..t).
    """
    h = policy.config.history
    preds, targets, cos = [], [], []
    for c in np.asarray(clips, dtype=np.int64):
        T = int(data.features[int(c)].shape[0])
        n = min(h, T)
        rows = [(int(c), 0)] + [(int(c), t - h + 1) for t in range(h, T)]
        b0 = window_batch(data, np.asarray(rows[:1]), n, policy.config, instructions, False)
        a0 = policy.predict_chunks(b0)[0, :, 0]  # steps 0..n-1
        f0 = policy.predict_future(b0)[0]
        p_parts, f_parts, idx = [a0], [f0], list(range(n))
        if len(rows) > 1:
            bl = window_batch(data, np.asarray(rows[1:]), h, policy.config, instructions, False)
            p_parts.append(policy.predict_chunks(bl)[:, -1, 0])
            f_parts.append(policy.predict_future(bl)[:, -1])
            idx += list(range(h, T))
        t = torch.as_tensor(idx)
        if with_actions:
            preds.append(torch.cat(p_parts))
            targets.append(data.actions[int(c)][t])
        fut_t = t + policy.config.future_delta
        ok = fut_t < T
        if bool(ok.any()):
            pf = torch.cat(f_parts)[ok]  # (m, C, D)
            tf = data.features[int(c)][fut_t[ok]]
            cos.append(torch.nn.functional.cosine_similarity(pf, tf, dim=-1).flatten())
    out: dict[str, Any] = {"clips": int(len(clips))}
    if with_actions and preds:
        err = torch.cat(preds) - torch.cat(targets)
        mse, l1 = (err ** 2).mean(0), err.abs().mean(0)
        out["action"] = {"mse": [float(x) for x in mse], "l1": [float(x) for x in l1], "mse_mean": float(mse.mean()),
                         "l1_mean": float(l1.mean()), "frames": int(err.shape[0]), "clips": int(len(clips))}
    if cos:
        out["future_cosine"] = float(torch.cat(cos).mean())
    return out


# ---------------------------------------------------------------------------- the loop (to move onto hralign/train/)
def _save_checkpoint(out: Path, policy: GR1Policy, optim: torch.optim.Optimizer, stage: str, step: int) -> None:
    with atomic_path(out / CHECKPOINT, suffix=".pt") as tmp:
        torch.save({"stage": stage, "step": step, "model": policy.state_dict(), "optim": optim.state_dict(),
                    **extra_state()}, tmp)


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """The resumable state in ``out`` (None when there is none); a damaged file is a one-line error."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of a damaged file
        raise HRAlignError(f"{path}: unreadable checkpoint ({e}); delete it or train without --resume") from e
    if not isinstance(ck, dict) or ck.get("stage") not in STAGES:
        raise HRAlignError(f"{path}: not a GR-1 policy checkpoint")
    return ck


def run_stages(policy: GR1Policy, plan: list[tuple[str, int, ClipData, np.ndarray]], train: GR1TrainConfig,
               instructions: torch.Tensor | None, out: Path, ckpt: dict[str, Any] | None = None,
               progress: bool = True) -> dict[str, dict[str, float]]:
    """Train ``policy`` through ``plan`` [(stage, steps, data, windows)]; returns each stage's last logs.

    THE PART TO MOVE ONTO hralign/train/: a plain AdamW loop per stage with per-step seeded batches,
    metrics.jsonl and an atomic checkpoint every ``checkpoint_every`` steps and at each stage's end.
    ``ckpt`` (from :func:`load_checkpoint`) resumes exactly: finished stages are skipped, the current
    one continues from its step with its optimiser and RNG state.
    """
    if ckpt is not None:
        policy.load_state_dict(ckpt["model"])
        load_extra_state(ckpt)
    finals: dict[str, dict[str, float]] = {}
    for stage, steps, data, rows in plan:
        start, optim_state = 0, None
        if ckpt is not None:
            if STAGES.index(stage) < STAGES.index(ckpt["stage"]):
                continue
            if stage == ckpt["stage"]:
                start, optim_state = int(ckpt["step"]), ckpt["optim"]
        if steps == 0 or start >= steps:
            continue
        optim = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=train.lr,
                                  weight_decay=train.weight_decay)
        if optim_state is not None:
            optim.load_state_dict(optim_state)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start, desc=f"gr1 {stage}", unit="step", dynamic_ncols=True)
        policy.train()
        logs: dict[str, float] = {}
        for step in range(start, steps):
            loss, logs = gr1_forward(policy, make_batch(stage, data, rows, policy.config, train, instructions, step))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            done = step + 1
            if done % train.log_every == 0 or done == steps:
                with open(out / METRICS, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"stage": stage, "step": done, **logs}) + "\n")
            if done % train.checkpoint_every == 0 or done == steps:
                _save_checkpoint(out, policy, optim, stage, done)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:3]})
        if bar is not None:
            bar.close()
        finals[stage] = logs
    return finals


def prepare_out(out: Path, resume: bool, overwrite: bool, run: dict[str, Any]) -> dict[str, Any] | None:
    """Check/prepare the run dir (run.json holds the settings a resume must repeat); returns the checkpoint."""
    run_file = out / "run.json"
    if resume:
        if not run_file.is_file():
            raise HRAlignError(f"--resume: {run_file} not found; nothing to resume in {out}")
        old = json.loads(run_file.read_text(encoding="utf-8"))
        if old != run:
            diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
            raise HRAlignError(f"--resume: {out} was started with other settings (differs in {', '.join(diff)}); "
                               "use the same flags or --overwrite")
        return load_checkpoint(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise HRAlignError(f"--out {out}: exists and is not empty; pass --resume to continue or --overwrite")
        for name in (CONFIG_FILE, METRICS, "run.json", "model.safetensors"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_file, json.dumps(run, indent=2))
    return None


def load_clip_data(pairs: PairsFile, domain: str, encoder: torch.nn.Module, clips: np.ndarray, actions: bool,
                   state: bool, progress: bool = False, placement: Placement | None = None) -> ClipData:
    """Frozen features (one camera: [T, 1, D]) and, when asked and stored, actions / state of ``clips``
    (``placement``: the encoder pass's device and precision; the encoder must already be there)."""
    feats = {c: f[:, None, :] for c, f in encode_clips(encoder, pairs, domain, clips, progress=progress,
                                                        placement=placement).items()}
    data = ClipData(domain, feats, np.asarray(pairs.clip_tasks(domain)))
    for c in feats:
        if actions:
            data.actions[c] = torch.from_numpy(np.asarray(pairs.read_clip(domain, c, name="actions"), np.float32))
            if data.actions[c].shape[0] != feats[c].shape[0]:
                raise HRAlignError(f"{pairs.path}: /{domain}/actions of clip {c} has {data.actions[c].shape[0]} rows "
                                   f"for {feats[c].shape[0]} frames")
        if state and pairs.has(domain, "state"):
            data.state[c] = torch.from_numpy(np.asarray(pairs.read_clip(domain, c, name="state"), np.float32))
    return data


def train_gr1(pairs_path: str | Path, source: EncoderSource, out: str | Path, config: GR1Config,
              train: GR1TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Train a GR-1-style policy into ``out``: stage 1 on the training human clips (future prediction only,
    ``train.pretrain_steps``), stage 2 on the training robot clips with actions (``train.steps``).

    Parameters
    ----------
    pairs_path : path
        Pairs file; robot clips must have ``/robot/actions`` (``/robot/state`` is used as proprio).
    source : EncoderSource
        Frozen encoder (+ adapter for robot frames).
    out : path
        Policy directory (config.json, model.safetensors, metrics.jsonl, checkpoints/), read by
        ``hralign policy eval`` and :func:`hralign.policy.load_policy`.
    config, train : GR1Config, GR1TrainConfig

    Returns a summary dict (clip and window counts, final losses, output path).
    """
    train = train or GR1TrainConfig()
    out = Path(out)
    pairs = PairsFile(pairs_path)
    check_robot_actions(pairs, "gr1")
    run = {"pairs": str(Path(pairs_path).resolve()), "pairs_sha256": sha256_file(pairs_path),
           "encoder": source.to_dict(), "kind": "gr1", "config": config.to_dict(),
           "train": {k: v for k, v in train.to_dict().items()
                     if k not in ("log_every", "checkpoint_every", "steps", "pretrain_steps")}}
    if train.pretrain_steps and "human" not in pairs.domains:
        raise HRAlignError(f"--pretrain-steps {train.pretrain_steps}: {pairs.path} has no human clips for stage 1")
    train_clips, held = clip_split(pairs, train.val_fraction, train.split_by, train.seed)
    if not len(train_clips.get("robot", [])):
        raise HRAlignError(f"{pairs.path}: no training robot clips after the split")
    action_clips = pick_fraction(train_clips["robot"], train.robot_fraction, train.seed)
    # check every clip's length before any encoding (a bad --history fails in a second, not after features)
    for d, cs in (("robot", action_clips), ("human", train_clips.get("human", []) if train.pretrain_steps else [])):
        lengths = pairs.clip_lengths(d)
        short = [int(c) for c in cs if lengths[int(c)] < config.history]
        if short:
            raise HRAlignError(f"--history {config.history}: {d} clip {short[0]} has only {int(lengths[short[0]])} "
                               f"frames; the history must not be longer than any training clip (use --history "
                               f"{int(lengths[list(cs)].min())} or less)")
    ckpt = prepare_out(out, resume, overwrite, run)

    robot_enc = source.robot_encoder()
    robot = load_clip_data(pairs, "robot", robot_enc, action_clips, actions=True, state=config.proprio,
                           progress=progress)
    plan_data: list[tuple[str, int, ClipData, np.ndarray]] = []
    counts: dict[str, Any] = {"robot_action_clips": len(action_clips),
                              "robot_action_frames": int(sum(f.shape[0] for f in robot.features.values())),
                              "train_clips": {d: len(v) for d, v in train_clips.items()},
                              "heldout_clips": {d: len(v) for d, v in held.items()}}
    fut_fit = [f[:, 0] for f in robot.features.values()]
    if train.pretrain_steps:
        human_enc = source.human_encoder(robot_enc)
        if int(human_enc.feature_dim) != int(robot_enc.feature_dim):
            raise HRAlignError(f"human encoder gives {human_enc.feature_dim}-d features, robot encoder "
                               f"{robot_enc.feature_dim}-d; they must agree")
        human = load_clip_data(pairs, "human", human_enc, train_clips["human"], actions=False, state=False,
                               progress=progress)
        hrows = windows(human, train_clips["human"], config.history)
        plan_data.append(("pretrain", train.pretrain_steps, human, hrows))
        counts["human_pretrain_clips"], counts["human_pretrain_windows"] = len(train_clips["human"]), len(hrows)
        fut_fit += [f[:, 0] for f in human.features.values()]
    rrows = windows(robot, action_clips, config.history)
    plan_data.append(("action", train.steps, robot, rrows))
    counts["robot_windows"] = len(rrows)

    instructions = instruction_embeddings(pairs.tasks, config.instruction)
    some = next(iter(robot.actions.values()))
    dims = {"feature_dim": int(robot_enc.feature_dim), "cameras": 1, "action_dim": int(some.shape[1]),
            "state_dim": int(next(iter(robot.state.values())).shape[1]) if robot.state else 0,
            "instruction_dim": int(instructions.shape[1]) if instructions is not None else 0}
    torch.manual_seed(train.seed)
    policy = GR1Policy(config, dims)
    policy.fit_head(torch.cat(list(robot.actions.values())))
    policy.fit_future(torch.cat(fut_fit))
    finals = run_stages(policy, plan_data, train, instructions, out, ckpt, progress)

    meta = {"encoder": {"source": source.to_dict(), "name": getattr(robot_enc, "name", "?"), "spec": robot_enc.spec,
                        "feature_dim": dims["feature_dim"], "image_size": int(robot_enc.image_size)},
            "train": train.to_dict(), "text_encoder": "minilm" if instructions is not None else None,
            "tasks": list(pairs.tasks),
            "data": {"pairs": run["pairs"], "pairs_sha256": run["pairs_sha256"],
                     "robot_action_clips": action_clips.tolist(),
                     "heldout_clips": {d: v.tolist() for d, v in held.items()}},
            "counts": counts, "final": finals}
    save_policy(policy, out, meta)
    return {"out": str(out), "kind": "gr1", **counts, "final": finals}
