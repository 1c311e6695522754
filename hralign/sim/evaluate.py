"""``evaluate_sim``: a policy on a protocol's demos, executed closed loop in MetaWorld from the robot view.

Protocols (HR-Align's downstream evaluation is ``robot``, Zhou et al., 2024):

* ``transfer`` - BC trained on *human-view* demos only (features of the frozen base encoder), executed
  from the *robot* view through the (adapted) robot encoder: human->robot transfer as in IGOR.
* ``few-shot`` - human-view demos plus ``few_shot`` robot-view demos per task.
* ``robot`` - robot-view demos only (R3M/HR-Align's protocol; a control).

The encoder rows train a policy of any registered kind (``--kind``; R3M's BC head by default) through
the policy factory (:func:`hralign.policy.fit_demos` on the cached demo features); the proprio-only
floor is always BC. This module only picks the demos, caches their features and runs the rollouts.
Every variant and every training seed is evaluated on the same goals (drawn from ``eval_seed``), so
differences are the encoder's.
Success rate is reported per seed, with mean, std and standard error over seeds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hralign.atomic import write_text_atomic
from hralign.device import DEVICE_HELP, PRECISION_HELP, DeviceConfig, Placement, resolve
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy import (BCConfig, BCPolicy, DemoSet, DemoTraining, EncoderSource, PolicyKind, demo_error,
                            fit_demos, get_policy_kind, load_policy, save_policy)
from hralign.policy.demos import demo_table, fit_table, table_dims, table_mse  # noqa: F401 - demo_table re-exported
from hralign.policy.factory import demo_clips as kind_demo_clips
from hralign.policy.features import features_by_clip
from hralign.policy.gr1.config import GR1Config
from hralign.policy.gr1.model import check_chunk_fits
from hralign.policy.train import instruction_table
from hralign.sim.collect import read_sim_meta
from hralign.sim.env import SimEnv, seed_rng
from hralign.sim.latent import SimLatentConfig, training_options
from hralign.sim.latent import policy_config as latent_policy_config
from hralign.sim.sequential import SequentialConfig, comparisons_against, run_rounds
from hralign.sim.stats import outcome_matrix
from hralign.train.early_stop import EarlyStopConfig

PROTOCOLS = ("transfer", "few-shot", "robot")
PROPRIO_ROW = "proprio-only"
POLICY_DIR = "policy"  # a seed's trained policy, rolled out again by later rounds


@dataclass
class SimEvalConfig:
    """How policies are trained and rolled out."""

    protocol: str = field(default="transfer", metadata={"help": "transfer (human-view demos -> robot view), "
                                                                "few-shot (human + a few robot demos) or robot."})
    rollouts: int = field(default=10, metadata={"help": "Closed-loop rollouts per task and seed."})
    seeds: int = field(default=3, metadata={"help": "Training seeds 0..K-1 (mean +- std over them)."})
    few_shot: int = field(default=3, metadata={"help": "Robot-view demos per task added under few-shot."})
    steps: int = field(default=1000, metadata={"help": "BC optimiser steps."})
    batch_size: int = field(default=256, metadata={"help": "Frames per optimiser step (GR-1: batch_size // history "
                                                            "windows of history frames, each frame a training position)."})
    lr: float | None = field(default=None, metadata={"help": "Peak learning rate of AdamW for BC and GR-1 alike "
                                                             "(default: each policy's own, BC 1e-3 constant, GR-1 "
                                                             "1e-3 after 100 warm-up steps, cosine)."})
    max_steps: int = field(default=200, metadata={"help": "Step limit of a rollout."})
    eval_seed: int = field(default=10_000, metadata={"help": "Seed of the rollout goals (same for every variant)."})
    envs: int = field(default=10, metadata={"help": "Envs per task stepped in lockstep (one batched encoder call "
                                                    "per step; ~240 MB each)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP + " Runs the encoder (demo features and "
                                                                        "rollout frames); BC and GR-1 stay on CPU."})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})
    kind: str = field(default="bc", metadata={"help": "Policy kind of the encoder rows, as `policy train --kind`: bc "
                                                      "(R3M's MLP), gr1 (GR-1-style transformer) or a registered "
                                                      "plug-in kind; the proprio-only floor stays BC."})
    early_stop_every: int = field(default=0, metadata={"help": "Train each policy to its own held-out fit: every N "
                                                               "steps evaluate the action error on held-out demo "
                                                               "clips, keep the best weights, stop after "
                                                               "--early-stop-patience evaluations without a new best "
                                                               "(--steps is then the maximum). 0 = off: every policy "
                                                               "trains --steps on all the protocol's demos."})
    early_stop_patience: int = field(default=5, metadata={"help": "Evaluations without a new best held-out error "
                                                                  "before training stops."})
    early_stop_heldout: float = field(default=0.2, metadata={"help": "Share of the protocol's demo clips of each task "
                                                                     "and domain held out for early stopping (seeded "
                                                                     "by the training seed; at least one stays in "
                                                                     "training)."})

    def __post_init__(self) -> None:
        get_policy_kind(self.kind, "`kind`")  # a registered kind (plug-ins included)
        if self.protocol not in PROTOCOLS:
            raise HRAlignError(f"`protocol` should be one of {', '.join(PROTOCOLS)} but the value passed is "
                               f"{self.protocol!r}")
        for name in ("rollouts", "seeds", "few_shot", "steps", "batch_size", "max_steps", "envs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HRAlignError(f"`{name}` should be an integer >= 1 but the value passed is {v!r}")
        self.early_stop  # noqa: B018 - checks every and patience
        f = self.early_stop_heldout
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
            raise HRAlignError(f"`early_stop_heldout` should be a number in (0, 1) but the value passed is {f!r}")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0):
            raise HRAlignError(f"`lr` should be a positive number but the value passed is {self.lr!r}")
        DeviceConfig(self.device, self.precision)  # names checked here; the hardware by evaluate_sim

    @property
    def early_stop(self) -> EarlyStopConfig:
        """The early-stopping rule of every trained row (``every`` 0: off)."""
        try:
            return EarlyStopConfig(every=self.early_stop_every, patience=self.early_stop_patience)
        except HRAlignError as e:
            raise HRAlignError(str(e).replace("`every`", "`early_stop_every`")
                               .replace("`patience`", "`early_stop_patience`")) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SimEvalConfig":
        """A saved config (results.json's ``config``); one written before ``kind`` existed names it ``policy``."""
        data = dict(data)
        if "policy" in data and "kind" not in data:
            data["kind"] = data.pop("policy")
        return cls(**data)


def heldout_split(pairs: PairsFile, clips: dict[str, np.ndarray], fraction: float,
                  seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training, held-out) demo clips: ``round(fraction * n)`` of the n clips of every (domain, task), drawn
    with ``seed``, at least one left for training. Why per task: a task's demos are what its rollouts
    need, so every task keeps demos on both sides."""
    train, held = {}, {}
    for d, cs in clips.items():
        cs = np.asarray(cs, dtype=np.int64)
        tasks = pairs.clip_tasks(d)[cs]
        rng = seed_rng(seed, "heldout", d)
        out = []
        for k in np.unique(tasks):
            mine = cs[tasks == k]
            n = min(int(round(fraction * len(mine))), len(mine) - 1)
            out.extend(rng.choice(mine, size=n, replace=False).tolist() if n > 0 else [])
        held[d] = np.sort(np.asarray(out, dtype=np.int64))
        train[d] = np.setdiff1d(cs, held[d])
    return train, {d: v for d, v in held.items() if len(v)}


def train_sim_bc(table: dict[str, torch.Tensor], seed: int, steps: int, batch_size: int, run: Path,
                 lr: float | None = None, heldout: dict[str, torch.Tensor] | None = None,
                 early_stop: EarlyStopConfig | None = None, train_overrides: dict[str, Any] | None = None,
                 extra: Callable[[BCPolicy], dict[str, Any]] | None = None) -> tuple[BCPolicy, dict[str, Any]]:
    """R3M's BC (BatchNorm, 2 x 256, MSE) on a demo ``table``, by hralign.policy's loop; (policy, final logs).

    The BC kind's ``fit_demos`` on a ready table (:func:`hralign.policy.demos.fit_table`), kept for the
    benchmarks that train on their own tables. With ``early_stop`` enabled: the action error on the
    ``heldout`` table every ``early_stop.every`` steps, the best weights kept, the record (curve
    included) in ``logs["early_stop"]``; ``extra(policy)`` adds figures to each evaluation.
    ``train_overrides``: other :class:`hralign.policy.TrainConfig` fields.
    """
    torch.manual_seed(seed)
    policy = BCPolicy.from_dims(BCConfig(head="bc", proprio=True), table_dims(table))
    training = DemoTraining(seed, steps, batch_size, run, lr=lr, early_stop=early_stop,
                            train_overrides=dict(train_overrides or {}), extra=extra)
    return fit_table(policy, table, training, heldout)


def demo_clips(pairs: PairsFile, protocol: str, few_shot: int, seed: int) -> dict[str, np.ndarray]:
    """Clips per domain the protocol trains on (few-shot: a seeded choice of ``few_shot`` robot clips per task)."""
    human = np.arange(pairs.num_clips("human"))
    robot = np.arange(pairs.num_clips("robot"))
    if protocol == "transfer":
        return {"human": human}
    if protocol == "robot":
        return {"robot": robot}
    tasks = pairs.clip_tasks("robot")
    rng = seed_rng(seed, "few-shot")
    chosen = [np.sort(rng.choice(robot[tasks == k], size=min(few_shot, int((tasks == k).sum())), replace=False))
              for k in np.unique(tasks)]
    return {"human": human, "robot": np.sort(np.concatenate(chosen))}


@torch.no_grad()
def rollout(envs: dict[str, list[SimEnv]], episodes: list[tuple[str, np.ndarray]], policy: nn.Module,
            encoder: nn.Module | None, max_steps: int, placement: Placement | None = None,
            instructions: dict[str, torch.Tensor] | None = None, human_view: bool = False) -> list[bool]:
    """Closed-loop episodes from the robot view, one per ``(task, goal)`` in ``episodes``; returns their successes.

    Every env of every task is stepped in lockstep and their frames go through the encoder in **one
    batch per step** (on one CPU thread ResNet-18 at 96 px costs ~3x more per image one at a time than
    in a batch of 10; benchmarks/eval_speed.py). An env whose episode ends (MetaWorld's first success,
    or ``max_steps``) takes the next waiting episode of its task at once, so the batch stays full until
    the queue drains instead of shrinking to the last slow episodes. Each episode is what it would be
    alone: reset to its goal, at most ``max_steps`` steps, stopped at its first success.

    ``placement``: the encoder's device and precision (it must already be there; default CPU fp32). A
    policy with a ``runner`` (GR-1) acts through it (history and temporal ensembling per episode);
    ``instructions`` maps a task to the text embedding [E] the policy conditions on. ``human_view``
    renders the human look instead (the human-view oracle).
    """
    placement = placement or Placement(torch.device("cpu"), "fp32")
    queues = {t: [i for i, (task, _) in enumerate(episodes) if task == t] for t in envs}
    unknown = sorted({t for t, _ in episodes} - set(envs))
    if unknown:
        raise HRAlignError(f"rollout: no envs for task(s) {', '.join(unknown)}")
    slots = [(t, env) for t, es in envs.items() for env in es]
    running: list[int | None] = [None] * len(slots)  # episode each slot is running
    steps = [0] * len(slots)
    obs: list[np.ndarray | None] = [None] * len(slots)
    success = [False] * len(episodes)
    policy.eval()
    runner = policy.runner(len(episodes), max_steps) if hasattr(policy, "runner") else None
    while True:
        for k, (t, env) in enumerate(slots):  # refill free slots
            if running[k] is None and queues[t]:
                running[k] = queues[t].pop(0)
                obs[k], steps[k] = env.reset(episodes[running[k]][1]), 0
        active = [k for k in range(len(slots)) if running[k] is not None]
        if not active:
            break
        batch = {"state": torch.from_numpy(np.stack([slots[k][1].proprio(obs[k]) for k in active]))}
        if encoder is not None:
            frames = np.stack([slots[k][1].render(human=human_view) for k in active])
            with torch.inference_mode(), placement.autocast():
                feats = encoder(torch.from_numpy(frames).to(placement.device))
            batch["features"] = feats.float().cpu()  # (B, D)
        if instructions is not None:
            batch["instruction"] = torch.stack([instructions[slots[k][0]] for k in active])
        ids = [running[k] for k in active]
        actions = (runner.act(batch, ids) if runner is not None else policy.select_action(batch)).numpy()
        for a, k in zip(actions, active):
            obs[k], ok = slots[k][1].step(a)
            steps[k] += 1
            if ok or steps[k] >= max_steps:
                success[running[k]] = bool(ok)
                running[k] = None
    return success


def bc_demo_mse(policy: BCPolicy, table: dict[str, torch.Tensor]) -> float:
    """Mean squared error of the BC policy's actions (eval mode) on its own demo frames: how well it fits the demos.

    The same quantity as :func:`hralign.sim.gr1.gr1_demo_mse`, so the two policies' fits compare in action units.
    """
    return table_mse(policy, table)


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "sem": std / math.sqrt(len(a)) if len(a) > 1 else 0.0}


@dataclass
class _Encoders:
    """A variant's encoders and demo features, built once and shared by its seeds.

    Not folded or converted for speed: BatchNorm folding and channels-last weights cut the encoder's CPU
    time by ~15% but change features by ~1e-6, and through BC training that flipped 4% of rollout
    outcomes (benchmarks/eval_speed.py); the encoder already runs near one core's fp32 peak.
    """

    robot: nn.Module | None = None
    human: nn.Module | None = None
    feats: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    video: dict[str, tuple[PairsFile, dict[int, torch.Tensor]]] = field(default_factory=dict)  # by file
    seconds: float = 0.0  # building them and encoding demo clips, this call

    def load(self, vname: str, source: EncoderSource, placement: Placement) -> None:
        if self.robot is not None:
            return
        t0 = time.perf_counter()
        robot = source.robot_encoder().to(placement.device)
        human = source.human_encoder(robot).to(placement.device) if source.adapter is not None else robot
        if int(human.feature_dim) != int(robot.feature_dim):
            raise HRAlignError(f"{vname}: human encoder gives {human.feature_dim}-d features, robot "
                               f"encoder {robot.feature_dim}-d; they must agree")
        self.robot, self.human = robot.eval(), human.eval()
        self.seconds += time.perf_counter() - t0

    def encode(self, pairs: PairsFile, need: dict[str, np.ndarray], placement: Placement) -> None:
        """Features of the clips in ``need`` not encoded yet: human clips through the frozen base, robot clips adapted."""
        t0 = time.perf_counter()
        for d, cs in need.items():
            have = self.feats.setdefault(d, {})
            missing = [int(c) for c in cs if int(c) not in have]
            if missing:
                have.update(features_by_clip(self.human if d == "human" else self.robot, pairs, d, missing,
                                         placement=placement))
        self.seconds += time.perf_counter() - t0

    def encode_video(self, path: str, placement: Placement) -> tuple[PairsFile, dict[int, torch.Tensor]]:
        """Features of every human clip of another file (a kind's video stage), through the frozen base; cached."""
        if path not in self.video:
            t0 = time.perf_counter()
            video = PairsFile(path)
            if "human" not in video.domains:
                raise HRAlignError(f"{path}: no human clips; the video stage reads a file's human clips")
            self.video[path] = (video, features_by_clip(self.human, video, "human", range(video.num_clips("human")),
                                                        placement=placement))
            self.seconds += time.perf_counter() - t0
        return self.video[path]


@dataclass
class RowPolicy:
    """What a row trains: a registered kind, its config and the kind's own training options."""

    kind: PolicyKind
    config: Any
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.name, "config": self.config.to_dict(), "options": dict(self.options)}


def row_policy(cfg: SimEvalConfig, policy_config: Any | None = None, train_options: dict[str, Any] | None = None,
               gr1: GR1Config | None = None, pretrain_steps: int = 0,
               latent: SimLatentConfig | None = None) -> RowPolicy:
    """The encoder rows' policy: ``cfg.kind`` with ``policy_config`` (default the kind's config with its
    closed-loop defaults) and ``train_options``. ``gr1`` / ``pretrain_steps`` (GR-1's config and stage 1)
    and ``latent`` (the latent chain: the latent kind on LAM labels) are the older spellings of the same."""
    if latent is not None:
        return RowPolicy(get_policy_kind("latent"), policy_config or latent_policy_config(),
                         {**training_options(latent), **(train_options or {})})
    kind = get_policy_kind(cfg.kind, "`kind`")
    if policy_config is None and isinstance(gr1, kind.config_class):
        policy_config = gr1
    if policy_config is None:
        policy_config = kind.config_class(**kind.closed_loop_defaults)
    if not isinstance(policy_config, kind.config_class):
        raise HRAlignError(f"policy config {type(policy_config).__name__} is not a {kind.config_class.__name__}, the "
                           f"config of --kind {kind.name}")
    options = {**({"pretrain_steps": int(pretrain_steps)} if pretrain_steps else {}), **(train_options or {})}
    return RowPolicy(kind, policy_config, options)


PROPRIO_POLICY = RowPolicy(get_policy_kind("bc"), BCConfig())  # the floor: R3M's BC on proprioception alone


def _train_seed(pairs: PairsFile, source: EncoderSource | None, encs: _Encoders, s: int, cfg: SimEvalConfig,
                placement: Placement, run: Path, rp: RowPolicy) -> tuple[nn.Module, torch.Tensor | None, dict[str, Any]]:
    """Train seed ``s``'s policy on the protocol's demos; (policy, instruction embeddings or None, its record)."""
    clips = demo_clips(pairs, cfg.protocol, cfg.few_shot, s)
    if source is not None:
        encs.load(run.parent.name, source, placement)
        encs.encode(pairs, kind_demo_clips(rp.kind, rp.options, pairs, clips), placement)  # stage 1 may read more
    stop = cfg.early_stop if rp.kind.early_stopping else EarlyStopConfig()  # e.g. the latent chain: fixed steps
    held: dict[str, np.ndarray] = {}
    if stop.enabled:
        clips, held = heldout_split(pairs, clips, cfg.early_stop_heldout, s)
    video = rp.options.get("pretrain_pairs")  # GR-1's stage 1 on another file's human clips
    demos = DemoSet(pairs, encs.feats if source is not None else None, clips, held,
                    encs.encode_video(str(video), placement) if video and source is not None else None)
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").unlink(missing_ok=True)
    t_train = time.perf_counter()
    policy, finals, instr = fit_demos(rp.config, demos, DemoTraining(s, cfg.steps, cfg.batch_size, run, lr=cfg.lr,
                                                                     early_stop=stop, options=rp.options))
    fit = demo_error(policy, demos, instr)  # None where the kind does not measure it
    save_policy(policy, run / POLICY_DIR, {"seed": s})  # later rounds of a sequential evaluation roll it out again
    frames = sum(int(pairs.clip_lengths(d)[np.asarray(c, dtype=np.int64)].sum()) for d, c in clips.items())
    rec = {"seed": s, "demo_frames": frames, "demo_clips": {d: len(c) for d, c in clips.items()},
           "final_loss": finals.get("action", {}).get("action_loss"), "demo_mse": fit,
           "train_s": time.perf_counter() - t_train,
           **({"early_stop": finals["early_stop"], "heldout_clips": {d: v.tolist() for d, v in held.items()}}
              if "early_stop" in finals else {}),
           **{f"{stage}_final": logs for stage, logs in finals.items() if stage not in ("action", "early_stop")},
           "rollout_s": 0.0}
    return policy, instr, rec


def _goals_done(rec: dict[str, Any] | None, tasks: list[str]) -> int:
    """Goals per task a seed record already holds (0 for none)."""
    if rec is None:
        return 0
    return min(len(rec.get("per_goal", {}).get(t, [])) for t in tasks)


def _upto(rec: dict[str, Any], upto: int, tasks: list[str]) -> dict[str, Any]:
    """A seed record cut to its first ``upto`` goals per task (success and per-task rates recomputed)."""
    per_goal = {t: list(rec["per_goal"][t][:upto]) for t in tasks}
    per_task = {t: sum(v) / upto for t, v in per_goal.items()}
    return {**rec, "per_goal": per_goal, "per_task": per_task, "success": float(np.mean(list(per_task.values()))),
            "rollouts": upto}


def evaluate_sim(pairs_path: str | Path, out: str | Path, variants: dict[str, EncoderSource | None],
                 config: SimEvalConfig | None = None, resume: bool = False, progress: bool = True,
                 human_view: tuple[str, ...] = (), gr1: GR1Config | None = None,
                 pretrain_steps: int = 0, latent: SimLatentConfig | None = None,
                 upto: int | None = None, policy_config: Any | None = None,
                 train_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and roll out one policy per (variant, seed); ``None`` as a variant = proprio-only (BC).

    The encoder rows train a policy of ``config.kind`` (any registered kind, :mod:`hralign.policy.registry`)
    with ``policy_config`` (default the kind's config with its closed-loop defaults, GR-1's
    ``gripper_dims="none"``: MetaWorld's gripper action is in [-1, 1]) and ``train_options`` (the kind's
    own, GR-1's ``pretrain_steps`` of stage 1 on every human-view clip). ``gr1`` and ``pretrain_steps``
    are the older names of GR-1's config and stage 1; with ``latent`` the encoder rows train the latent
    policy instead (the latent chain, :mod:`hralign.sim.latent`: latent tokens on the labelled human-view
    clips, then the protocol's demos).

    ``upto``: roll out the first ``upto`` goals per task (default ``config.rollouts``, the maximum): a
    sequential evaluation (:mod:`hralign.sim.sequential`) calls again with more, and with ``resume`` each
    seed continues from the goals it has, rolling out its saved policy (``<variant>/seed<k>/policy``)
    instead of training again.

    Writes ``out/<variant>/seed<k>.json`` as each finishes (``resume`` reuses those present; each
    holds the outcome of every goal so far, ``per_goal``, for the paired bootstrap, and ``demo_mse``, the
    trained policy's action error on its own demo frames) and ``out/results.json``
    (per-variant success mean/std/sem over seeds, per task, the rollouts run in this call and the
    worker-seconds spent). Variants named in ``human_view`` are rolled out from the human view (the oracle row).
    """
    cfg = config or SimEvalConfig()
    upto = cfg.rollouts if upto is None else int(upto)
    if not 1 <= upto <= cfg.rollouts:
        raise HRAlignError(f"upto: {upto} goals per task, expected 1..{cfg.rollouts} (--rollouts)")
    rp = row_policy(cfg, policy_config, train_options, gr1, pretrain_steps, latent)
    if hasattr(rp.config, "chunk"):
        check_chunk_fits(int(rp.config.chunk), cfg.max_steps)  # before any work
    placement = resolve(DeviceConfig(cfg.device, cfg.precision))
    out = Path(out)
    meta = read_sim_meta(pairs_path)
    pairs = PairsFile(pairs_path)
    ccfg = meta["config"]
    tasks = list(ccfg["tasks"])
    envs, goals = _envs_and_goals(cfg, ccfg)
    results: dict[str, Any] = {"pairs": str(pairs_path), "config": cfg.to_dict(), "collect": ccfg, "upto": upto,
                               "variants": {}}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(variants) * cfg.seeds * len(tasks) * upto, desc=f"sim eval {cfg.protocol}",
                   unit="rollout", dynamic_ncols=True)
    loop = _Loop(pairs, cfg, placement, envs, goals, tasks, upto, resume, bar)
    for vname, source in variants.items():
        row_rp = rp if source is not None else PROPRIO_POLICY
        row = loop.variant(out / vname, vname, source, row_rp, human_view=vname in human_view)
        extra = {"latent": latent.to_dict()} if latent is not None and source is not None else {}
        results["variants"][vname] = {"source": source.to_dict() if source is not None else None,
                                      "kind": row_rp.kind.name, "policy": row_rp.kind.name, **row_rp.to_dict(),
                                      **extra, **row}
    if bar is not None:
        bar.close()
    for task_envs in envs.values():
        for env in task_envs:
            env.close()
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    return results


def _envs_and_goals(cfg: SimEvalConfig, ccfg: dict[str, Any]) -> tuple[dict[str, list[SimEnv]], dict[str, list]]:
    """Envs per task (reused for every variant and seed) and the goals every row is rolled out on (``eval_seed``)."""
    n_envs = min(cfg.envs, cfg.rollouts)
    envs = {t: [SimEnv(t, int(ccfg["image_size"]), ccfg["camera"]) for _ in range(n_envs)] for t in ccfg["tasks"]}
    goals = {t: [envs[t][0].sample_goal(seed_rng(cfg.eval_seed, envs[t][0].name, r, 0)) for r in range(cfg.rollouts)]
             for t in ccfg["tasks"]}
    return envs, goals


@dataclass
class _Loop:
    """The per-variant and per-seed steps of :func:`evaluate_sim` over shared envs, goals and settings."""

    pairs: PairsFile
    cfg: SimEvalConfig
    placement: Placement
    envs: dict[str, list[SimEnv]]
    goals: dict[str, list]
    tasks: list[str]
    upto: int
    resume: bool
    bar: Any

    def variant(self, vdir: Path, vname: str, source: EncoderSource | None, rp: RowPolicy,
                human_view: bool) -> dict[str, Any]:
        """Every seed of one row: trained (or read back / continued) and rolled out; its summary over seeds."""
        vdir.mkdir(parents=True, exist_ok=True)
        encs = _Encoders()
        per_seed: list[dict[str, Any]] = []
        resumed_seeds = ran = 0  # seeds read back whole, rollouts run in this call (rates count only these)
        for s in range(self.cfg.seeds):
            rec, n = self.seed(vdir, vname, source, rp, encs, s, human_view)
            resumed_seeds += n is None
            ran += n or 0
            per_seed.append(rec)
        tasks = self.tasks
        return {"per_seed": per_seed, "resumed_seeds": resumed_seeds, "rollouts_run": ran,
                "worker_s": encs.seconds + sum(r.get("train_s", 0.0) + r.get("rollout_s", 0.0) for r in per_seed),
                **_stats([r["success"] for r in per_seed]),
                "per_task": {t: _stats([r["per_task"][t] for r in per_seed]) for t in tasks}}

    def seed(self, vdir: Path, vname: str, source: EncoderSource | None, rp: RowPolicy, encs: _Encoders, s: int,
             human_view: bool) -> tuple[dict[str, Any], int | None]:
        """One seed: (its record, rollouts run in this call; None when read back whole)."""
        tasks, upto, placement = self.tasks, self.upto, self.placement
        done, run = vdir / f"seed{s}.json", vdir / f"seed{s}"
        prev = json.loads(done.read_text(encoding="utf-8")) if self.resume and done.is_file() else None
        have = _goals_done(prev, tasks)
        if have >= upto:
            if self.bar is not None:
                self.bar.update(len(tasks) * upto)
            return _upto(prev, upto, tasks), None
        instr = None
        if prev is not None and have and (run / POLICY_DIR).is_dir():  # a later round: the saved policy
            policy, _ = load_policy(run / POLICY_DIR)
            rec = prev
            if source is not None:
                encs.load(vname, source, placement)
            instr = instruction_table(self.pairs.tasks, bool(policy.dims.get("instruction_dim", 0)))
        else:
            have = have if prev is not None else 0  # (a record without its policy: train the same seed again)
            policy, instr, rec = _train_seed(self.pairs, source, encs, s, self.cfg, placement, run, rp)
            rec = {**rec, "per_goal": {t: list(prev["per_goal"][t][:have]) for t in tasks} if have else {}}
        t_roll = time.perf_counter()
        episodes = [(t, self.goals[t][r]) for t in tasks for r in range(have, upto)]
        ok = rollout(self.envs, episodes, policy, encs.robot, self.cfg.max_steps, placement,
                     {t: instr[ti] for ti, t in enumerate(tasks)} if instr is not None else None,
                     human_view=human_view)
        per_goal = {t: list(rec.get("per_goal", {}).get(t, []))[:have] +
                    [int(o) for (task, _), o in zip(episodes, ok) if task == t] for t in tasks}
        rec = _upto({**rec, "per_goal": per_goal, "rollout_s": rec.get("rollout_s", 0.0) +
                     time.perf_counter() - t_roll}, upto, tasks)
        if self.bar is not None:
            self.bar.update(len(tasks) * upto)
        write_text_atomic(done, json.dumps(rec, indent=2))
        return rec, len(episodes)


def evaluate_sequential(pairs_path: str | Path, out: str | Path, variants: dict[str, EncoderSource | None],
                        config: SimEvalConfig, sequential: SequentialConfig, reference: str,
                        resume: bool = False, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_sim` in rounds: every row against ``reference``, each stopped by the rule of
    :mod:`hralign.sim.sequential`; ``results["sequential"]`` says where and why each comparison stopped."""
    rows = list(variants)
    comparisons = comparisons_against(rows, reference)
    maximum, option = sequential.maximum(config.rollouts, config.seeds)
    sequential.looks(maximum, option)  # a maximum below one round: refused before anything runs
    last: dict[str, Any] = {}
    first = [True]
    by_goals = sequential.round_by == "goals"

    def run_round(names: list, upto: int) -> dict:
        cfg = config if by_goals else replace(config, seeds=upto)  # seeds 0..upto-1, each on every goal
        res = evaluate_sim(pairs_path, out, {n: variants[n] for n in names}, cfg, resume=resume or not first[0],
                           upto=upto if by_goals else None, **kwargs)
        first[0] = False
        last.update(res["variants"])
        last["_meta"] = res
        return {n: outcome_matrix(res["variants"][n], res["collect"]["tasks"]) for n in names}

    decisions = run_rounds(run_round, comparisons, sequential, maximum)
    results = {k: v for k, v in last.pop("_meta").items() if k not in ("variants", "upto")}
    results["variants"] = {n: last[n] for n in rows}
    results["sequential"] = decisions
    write_text_atomic(Path(out) / "results.json", json.dumps(results, indent=2))
    return results


def format_results(results: dict[str, Any]) -> str:
    """A markdown table: variant, success mean +- std (sem) over seeds, per task."""
    cfg = results["config"]
    tasks = list(results["collect"]["tasks"])
    lines = [f"protocol {cfg['protocol']}: {cfg['rollouts']} rollouts/task x {cfg['seeds']} seeds",
             "| variant | success (mean +- std, sem) | " + " | ".join(tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for name, row in results["variants"].items():
        cells = [f"{row['per_task'][t]['mean']:.2f}" for t in tasks]
        lines.append(f"| {name} | {row['mean']:.2f} +- {row['std']:.2f} ({row['sem']:.2f}) | " + " | ".join(cells) + " |")
    seq = results.get("sequential")
    if seq:
        lines.append(f"sequential: {seq['rule']}; target half-width {seq['config']['target_half_width']}")
        for c in seq["comparisons"]:
            lines.append(f"  {c['row']} - {c['reference']}: {c['diff']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] "
                         f"stopped at look {c['look']} ({c['stop']}), {c['rollouts']} rollouts per row")
    return "\n".join(lines)
