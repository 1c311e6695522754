"""Training the GR-1-style policy: stage 1 on human-view clips (future only), stage 2 on robot demos.

A trainer of hralign's shared training layer (``hralign/train/``, docs/training.md), as
``hralign/policy/train.py`` is; GR-1 supplies only what is its own, one :class:`~hralign.train.Phase`
per stage:

* :func:`batch_rows` - the windows of global batch (seed, stage, step), drawn by a generator seeded
  with all three, so a resumed run draws exactly the batches the uninterrupted run would have drawn;
  each process takes its share (``Session.local_rows``);
* :func:`gr1_forward` - ``forward -> (loss, logs)``;
* :func:`evaluate_windows` - the evaluation (held-out action error and future-feature cosine), offline
  in ``hralign policy eval`` as for the other policies.

The layer owns the rest: devices and precision (Accelerate), processes, the run directory rule,
checkpoints (``checkpoints/step_N``), metrics.jsonl, the optimiser and schedule, and the torch RNG
(seeded from (seed, update) before each step, so dropout repeats on resume without storing RNG state).

Features of every clip are computed once by the frozen encoder (robot clips through the adapted
encoder, human clips through the frozen base, as HR-Align adapts only the robot branch) and cached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hralign.device import Placement
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.pairs import PairsFile
from hralign.policy.data import check_robot_actions, clip_split, pick_fraction
from hralign.policy.features import features_by_clip
from hralign.policy.gr1.config import GR1Config, GR1TrainConfig
from hralign.policy.gr1.model import GR1Policy
from hralign.policy.io import EncoderSource, save_policy
from hralign.train import Phase, Session, open_session
from hralign.train.checkpoint import CheckpointSaver
from hralign.train.distributed import MaskedMean

RESUMABLE = ("pretrain_steps",)  # besides the layer's: stage 1's length may change on --resume, as --steps
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


def video_human_clips(video: PairsFile) -> np.ndarray:
    """Every human clip of stage 1's video file (``--pretrain-pairs``: all of it is pretraining video)."""
    return np.arange(video.num_clips("human"), dtype=np.int64)


def stage_tasks(pairs: PairsFile, video: PairsFile) -> list[str]:
    """Task names the instruction table embeds: ``pairs``' tasks (the ids the policy acts with), then those
    of a separate stage-1 video file, whose clips' task ids are shifted past ``pairs``'."""
    return list(pairs.tasks) + (list(video.tasks) if video is not pairs else [])


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


def batch_rows(stage: str, rows: np.ndarray, train: GR1TrainConfig, step: int) -> np.ndarray:
    """The windows of global batch (``train.seed``, ``stage``, ``step``): the same on every run and on resume."""
    g = torch.Generator().manual_seed(int(train.seed) * 1_000_003 + STAGES.index(stage) * 100_003 + int(step))
    pick = torch.randint(0, len(rows), (min(train.batch_size, max(2, len(rows))),), generator=g).numpy()
    return rows[pick]


def gr1_forward(policy: torch.nn.Module, batch: dict[str, torch.Tensor],
                mean: MaskedMean | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The trainer's forward: loss and logs (stage 1 batches carry no actions, so only the future loss).
    ``policy`` is the GR1Policy or its DDP wrapper (several processes); ``mean`` the session's
    ``masked_mean`` (the loss is then the mean over the global batch's counted positions)."""
    return policy(batch, mean=mean)


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


# ---------------------------------------------------------------------------- on the training layer
def stage_phase(policy: GR1Policy, stage: str, steps: int, data: ClipData, rows: np.ndarray, train: GR1TrainConfig,
                instructions: torch.Tensor | None, session: Session) -> Phase:
    """The layer's phase of one stage: this process's share of each global batch of windows."""
    config = policy.config

    def forward(model: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        local = session.local_rows(batch_rows(stage, rows, train, step))
        batch = window_batch(data, local, config.history, config, instructions, with_actions=stage == "action")
        return gr1_forward(model, {k: v.to(session.device) for k, v in batch.items()}, session.masked_mean)

    return Phase(stage, steps, policy, forward, weight_decay=train.weight_decay, record={"stage": stage})


def run_stages(policy: GR1Policy, plan: list[tuple[str, int, ClipData, np.ndarray]], train: GR1TrainConfig,
               instructions: torch.Tensor | None, session: Session, progress: bool = True,
               evaluate: Callable[[int], dict[str, Any]] | None = None,
               stop: Callable[[], bool] | None = None) -> dict[str, dict[str, float]]:
    """Train ``policy`` through ``plan`` [(stage, steps, data, windows)] in ``session`` (begun); returns each
    stage's last logs. A resumed session skips finished stages and continues the current one exactly.
    ``evaluate(step)`` / ``stop()`` run every ``train.eval_every`` steps of the action stage (held-out
    early stopping, :mod:`hralign.train.early_stop`)."""
    policy.to(session.device)
    finals: dict[str, dict[str, float]] = {}
    for stage, steps, data, rows in plan:
        if steps == 0:
            continue
        phase = stage_phase(policy, stage, steps, data, rows, train, instructions, session)
        if stage == "action":
            phase = dataclasses.replace(phase, evaluate=evaluate, stop=stop)
        logs = session.run_phase(phase, STAGES.index(stage), progress)
        if logs:
            finals[stage] = logs
    return finals


def load_checkpoint(out: str | Path) -> dict[str, Any] | None:
    """Stage and step of the newest checkpoint in ``out`` (None when there is none); a damaged one is a one-line error."""
    ck = CheckpointSaver(Path(out), keep=1).latest()
    return None if ck is None else {"stage": ck.state["phase"], "step": int(ck.state["step"]),
                                    "updates": int(ck.state["updates"])}


def load_clip_data(pairs: PairsFile, domain: str, encoder: torch.nn.Module, clips: np.ndarray, actions: bool,
                   state: bool, progress: bool = False, placement: Placement | None = None) -> ClipData:
    """Frozen features (one camera: [T, 1, D]) and, when asked and stored, actions / state of ``clips``
    (``placement``: the encoder pass's device and precision; the encoder must already be there)."""
    feats = {c: f[:, None, :] for c, f in features_by_clip(encoder, pairs, domain, clips, progress=progress,
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

    resume, overwrite : bool
        Shortcuts for ``train.resume`` / ``train.overwrite`` (the training layer's run-directory rule).

    Returns a summary dict (clip and window counts, final losses, output path); ``{}`` on the processes
    other than the main one under a launcher.
    """
    train = train or GR1TrainConfig()
    train = dataclasses.replace(train, resume=train.resume or resume, overwrite=train.overwrite or overwrite)
    out = Path(out)
    pairs = PairsFile(pairs_path)
    check_robot_actions(pairs, "gr1")
    run = {"pairs": str(Path(pairs_path).resolve()), "pairs_sha256": sha256_file(pairs_path),
           "encoder": source.to_dict(), "kind": "gr1", "config": config.to_dict(), "train": train.to_dict()}
    video = PairsFile(train.pretrain_pairs) if train.pretrain_pairs else pairs  # stage 1's human clips
    if train.pretrain_pairs:
        run["pretrain_pairs_sha256"] = sha256_file(train.pretrain_pairs)
    if train.pretrain_steps and "human" not in video.domains:
        raise HRAlignError(f"--pretrain-steps {train.pretrain_steps}: {video.path} has no human clips for stage 1")
    train_clips, held = clip_split(pairs, train.val_fraction, train.split_by, train.seed)
    if not len(train_clips.get("robot", [])):
        raise HRAlignError(f"{pairs.path}: no training robot clips after the split")
    action_clips = pick_fraction(train_clips["robot"], train.robot_fraction, train.seed)
    video_clips = (video_human_clips(video) if train.pretrain_pairs else train_clips.get("human", [])) \
        if train.pretrain_steps else []
    # check every clip's length before any encoding (a bad --history fails in a second, not after features)
    for d, cs, f in (("robot", action_clips, pairs), ("human", video_clips, video)):
        lengths = f.clip_lengths(d) if len(cs) else np.zeros(0)
        short = [int(c) for c in cs if lengths[int(c)] < config.history]
        if short:
            raise HRAlignError(f"--history {config.history}: {f.path} {d} clip {short[0]} has only {int(lengths[short[0]])} "
                               f"frames; the history must not be longer than any training clip (use --history "
                               f"{int(lengths[list(cs)].min())} or less)")
    session = open_session(train, out, "gr1", run, RESUMABLE, find_unused_parameters=True)
    session.begin()  # checks passed: the run directory is created

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
        human = load_clip_data(video, "human", human_enc, video_clips, actions=False, state=False,
                               progress=progress)
        if video is not pairs:  # its tasks follow --pairs' in the instruction table
            human.tasks = human.tasks + len(pairs.tasks)
        hrows = windows(human, video_clips, config.history)
        plan_data.append(("pretrain", train.pretrain_steps, human, hrows))
        counts["human_pretrain_clips"], counts["human_pretrain_windows"] = len(video_clips), len(hrows)
        fut_fit += [f[:, 0] for f in human.features.values()]
    rrows = windows(robot, action_clips, config.history)
    plan_data.append(("action", train.steps, robot, rrows))
    counts["robot_windows"] = len(rrows)

    instructions = instruction_embeddings(stage_tasks(pairs, video), config.instruction)
    some = next(iter(robot.actions.values()))
    dims = {"feature_dim": int(robot_enc.feature_dim), "cameras": 1, "action_dim": int(some.shape[1]),
            "state_dim": int(next(iter(robot.state.values())).shape[1]) if robot.state else 0,
            "instruction_dim": int(instructions.shape[1]) if instructions is not None else 0}
    torch.manual_seed(train.seed)
    policy = GR1Policy(config, dims)
    policy.fit_head(torch.cat(list(robot.actions.values())))
    policy.fit_future(torch.cat(fut_fit))
    policy.fit_inputs(torch.cat([f[:, 0] for f in robot.features.values()]),
                      torch.cat(list(robot.state.values())) if robot.state else None)
    finals = run_stages(policy, plan_data, train, instructions, session, progress)
    if not session.is_main:
        session.finish()
        return {}
    policy.cpu()

    meta = {"encoder": {"source": source.to_dict(), "name": getattr(robot_enc, "name", "?"), "spec": robot_enc.spec,
                        "feature_dim": dims["feature_dim"], "image_size": int(robot_enc.image_size)},
            "train": train.to_dict(), "text_encoder": "minilm" if instructions is not None else None,
            "tasks": list(pairs.tasks),
            "data": {"pairs": run["pairs"], "pairs_sha256": run["pairs_sha256"],
                     "robot_action_clips": action_clips.tolist(),
                     "heldout_clips": {d: v.tolist() for d, v in held.items()}},
            "counts": counts, "final": finals}
    save_policy(policy, out, meta)
    session.finish()
    return {"out": str(out), "kind": "gr1", **counts, "final": finals}
