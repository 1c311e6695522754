"""``evaluate_sim``: BC on a protocol's demos, executed closed loop in MetaWorld from the robot view.

Protocols (issue 10; HR-Align's downstream evaluation is ``robot``, Zhou et al., 2024):

* ``transfer`` - BC trained on *human-view* demos only (features of the frozen base encoder), executed
  from the *robot* view through the (adapted) robot encoder: human->robot transfer as in IGOR.
* ``few-shot`` - human-view demos plus ``few_shot`` robot-view demos per task.
* ``robot`` - robot-view demos only (R3M/HR-Align's protocol; a control).

The policy is :class:`hralign.policy.BCPolicy` (R3M's BC head) trained by hralign.policy's own loop;
this module only builds the per-frame tables and runs the rollouts. Every variant and every training
seed is evaluated on the same goals (drawn from ``eval_seed``), so differences are the encoder's.
Success rate is reported per seed, with mean, std and standard error over seeds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hralign.atomic import write_text_atomic
from hralign.device import DEVICE_HELP, PRECISION_HELP, DeviceConfig, Placement, resolve
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy import BCConfig, BCPolicy, EncoderSource, TrainConfig
from hralign.policy.features import encode_clips
from hralign.policy.gr1.config import GR1Config
from hralign.policy.gr1.model import check_chunk_fits
from hralign.policy.train import (
    run_stage,  # the BC training loop of hralign.policy (no second BC here)
)
from hralign.sim.collect import read_sim_meta
from hralign.sim.env import SimEnv, seed_rng
from hralign.sim.gr1 import gr1_demo_mse, train_sim_gr1
from hralign.sim.latent import SimLatentConfig, train_sim_latent

PROTOCOLS = ("transfer", "few-shot", "robot")
POLICIES = ("bc", "gr1")
PROPRIO_ROW = "proprio-only"


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
                                                             "(default: each policy's own, BC 1e-3, GR-1 3e-4)."})
    max_steps: int = field(default=200, metadata={"help": "Step limit of a rollout."})
    eval_seed: int = field(default=10_000, metadata={"help": "Seed of the rollout goals (same for every variant)."})
    envs: int = field(default=10, metadata={"help": "Envs per task stepped in lockstep (one batched encoder call "
                                                    "per step; ~240 MB each)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP + " Runs the encoder (demo features and "
                                                                        "rollout frames); BC and GR-1 stay on CPU."})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})
    policy: str = field(default="bc", metadata={"help": "Policy of the encoder rows: bc (R3M's MLP) or gr1 (GR-1-style "
                                                        "transformer; the proprio-only floor stays BC)."})

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise HRAlignError(f"`policy` should be one of {', '.join(POLICIES)} but the value passed is {self.policy!r}")
        if self.protocol not in PROTOCOLS:
            raise HRAlignError(f"`protocol` should be one of {', '.join(PROTOCOLS)} but the value passed is "
                               f"{self.protocol!r}")
        for name in ("rollouts", "seeds", "few_shot", "steps", "batch_size", "max_steps", "envs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HRAlignError(f"`{name}` should be an integer >= 1 but the value passed is {v!r}")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0):
            raise HRAlignError(f"`lr` should be a positive number but the value passed is {self.lr!r}")
        DeviceConfig(self.device, self.precision)  # names checked here; the hardware by evaluate_sim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def demo_table(pairs: PairsFile, feats: dict[str, dict[int, torch.Tensor]] | None,
               clips: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """One row per demo frame: ``features`` [N, D] (empty when None), ``state`` [N, S], ``action`` [N, A], ``task``."""
    cols: dict[str, list[torch.Tensor]] = {"features": [], "state": [], "action": [], "task": []}
    for d, cs in clips.items():
        for name in ("actions", "state"):
            if not pairs.has(d, name):
                raise HRAlignError(f"{pairs.path}: /{d}/{name} does not exist; write the file with `hralign sim collect`")
        tasks = pairs.clip_tasks(d)
        for c in cs:
            act = torch.from_numpy(np.asarray(pairs.read_clip(d, int(c), name="actions"), np.float32))
            cols["action"].append(act)
            cols["state"].append(torch.from_numpy(np.asarray(pairs.read_clip(d, int(c), name="state"), np.float32)))
            cols["task"].append(torch.full((len(act),), int(tasks[c]), dtype=torch.long))
            cols["features"].append(feats[d][int(c)] if feats is not None else torch.zeros(len(act), 0))
    return {k: torch.cat(v) for k, v in cols.items()}


@torch.no_grad()
def rollout(envs: list[SimEnv], policy: nn.Module, encoder: nn.Module | None, goals: list[np.ndarray],
            max_steps: int, placement: Placement | None = None, instruction: torch.Tensor | None = None,
            human_view: bool = False) -> list[bool]:
    """Closed-loop episodes from the robot view, one per (env, goal), stepped in lockstep.

    The encoder sees one batch of the still-running envs' frames per step: on one CPU thread a
    batch of 10 costs ~11 ms per image against ~34 ms one at a time (ResNet-18 at 96 px, measured),
    which more than halves a rollout. An episode stops at MetaWorld's first success. ``placement``:
    the encoder's device and precision (it must already be there; default CPU fp32). A policy with a
    ``runner`` (GR-1) acts through it: history per episode and ACT's temporal ensembling of its chunks;
    ``instruction`` [E] is the task's text embedding it conditions on.
    ``human_view`` renders the human look instead (the human-view oracle: how well a policy trained
    on human-view demos does where it sees what it was trained on).
    """
    placement = placement or Placement(torch.device("cpu"), "fp32")
    if len(envs) < len(goals):
        raise HRAlignError(f"rollout: {len(goals)} goals for {len(envs)} envs")
    obs = [env.reset(g) for env, g in zip(envs, goals)]
    success = [False] * len(goals)
    policy.eval()
    runner = policy.runner(len(goals), max_steps) if hasattr(policy, "runner") else None
    for _ in range(max_steps):
        active = [i for i, ok in enumerate(success) if not ok]
        if not active:
            break
        batch = {"state": torch.from_numpy(np.stack([envs[i].proprio(obs[i]) for i in active]))}
        if encoder is not None:
            frames = np.stack([envs[i].render(human=human_view) for i in active])
            with torch.inference_mode(), placement.autocast():
                feats = encoder(torch.from_numpy(frames).to(placement.device))
            batch["features"] = feats.float().cpu()  # (B, D)
        if instruction is not None:
            batch["instruction"] = instruction[None, :].expand(len(active), -1)
        actions = (runner.act(batch, active) if runner is not None else policy.select_action(batch)).numpy()
        for a, i in zip(actions, active):
            obs[i], success[i] = envs[i].step(a)
    return success


@torch.no_grad()
def bc_demo_mse(policy: BCPolicy, table: dict[str, torch.Tensor]) -> float:
    """Mean squared error of the BC policy's actions (eval mode) on its own demo frames: how well it fits the demos.

    The same quantity as :func:`hralign.sim.gr1.gr1_demo_mse`, so the two policies' fits compare in action units.
    """
    was = policy.training
    policy.eval()
    try:
        pred = policy.select_action({"features": table["features"], "state": table["state"]})
    finally:
        policy.train(was)
    return float(((pred - table["action"]) ** 2).mean())


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "sem": std / math.sqrt(len(a)) if len(a) > 1 else 0.0}


def evaluate_sim(pairs_path: str | Path, out: str | Path, variants: dict[str, EncoderSource | None],
                 config: SimEvalConfig | None = None, resume: bool = False, progress: bool = True,
                 human_view: tuple[str, ...] = (), gr1: GR1Config | None = None,
                 pretrain_steps: int = 0, latent: SimLatentConfig | None = None) -> dict[str, Any]:
    """Train and roll out one policy per (variant, seed); ``None`` as a variant = proprio-only (BC).

    With ``config.policy == "gr1"`` the encoder rows train :class:`hralign.policy.gr1.GR1Policy`
    (``gr1``, default ``GR1Config(gripper_dims="none")``: MetaWorld's gripper action is in [-1, 1])
    after ``pretrain_steps`` of stage 1 on every human-view clip (:mod:`hralign.sim.gr1`). With
    ``latent`` the encoder rows train the latent-action policy instead (:mod:`hralign.sim.latent`:
    latent tokens on the labelled human-view clips, then the protocol's demos).

    Writes ``out/<variant>/seed<k>.json`` as each finishes (``resume`` skips those present; each
    holds the outcome of every goal, ``per_goal``, for the paired bootstrap, and ``demo_mse``, the
    trained policy's action error on its own demo frames) and ``out/results.json``
    (per-variant success mean/std/sem over seeds, per task, timings). Variants named in
    ``human_view`` are rolled out from the human view (the oracle row).
    """
    cfg = config or SimEvalConfig()
    gr1 = gr1 or GR1Config(gripper_dims="none")
    if cfg.policy == "gr1":
        check_chunk_fits(gr1.chunk, cfg.max_steps)  # before any work
    placement = resolve(DeviceConfig(cfg.device, cfg.precision))
    out = Path(out)
    meta = read_sim_meta(pairs_path)
    pairs = PairsFile(pairs_path)
    ccfg = meta["config"]
    tasks = list(ccfg["tasks"])
    n_envs = min(cfg.envs, cfg.rollouts)  # per task, reused for every variant and seed
    envs = {t: [SimEnv(t, int(ccfg["image_size"]), ccfg["camera"]) for _ in range(n_envs)] for t in tasks}
    goals = {t: [envs[t][0].sample_goal(seed_rng(cfg.eval_seed, envs[t][0].name, r, 0)) for r in range(cfg.rollouts)]
             for t in tasks}
    results: dict[str, Any] = {"pairs": str(pairs_path), "config": cfg.to_dict(), "collect": ccfg, "variants": {}}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(variants) * cfg.seeds * len(tasks) * cfg.rollouts, desc=f"sim eval {cfg.protocol}",
                   unit="rollout", dynamic_ncols=True)
    for vname, source in variants.items():
        vdir = out / vname
        vdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        robot_enc = human_enc = None
        feats: dict[str, dict[int, torch.Tensor]] | None = None
        per_seed: list[dict[str, Any]] = []
        resumed_seeds = 0  # read back from an earlier call, not run here: rates must not count them
        for s in range(cfg.seeds):
            done = vdir / f"seed{s}.json"
            if resume and done.is_file():
                per_seed.append(json.loads(done.read_text(encoding="utf-8")))
                resumed_seeds += 1
                if bar is not None:
                    bar.update(len(tasks) * cfg.rollouts)
                continue
            clips = demo_clips(pairs, cfg.protocol, cfg.few_shot, s)
            use_gr1 = cfg.policy == "gr1" and source is not None and latent is None
            use_latent = latent is not None and source is not None
            need = dict(clips)
            if (use_gr1 and pretrain_steps) or (use_latent and latent.latent_steps):  # stage 1 reads every human clip
                need["human"] = np.arange(pairs.num_clips("human"))
            if source is not None and robot_enc is None:
                robot_enc = source.robot_encoder().to(placement.device)
                human_enc = (source.human_encoder(robot_enc).to(placement.device) if source.adapter is not None
                             else robot_enc)
                if int(human_enc.feature_dim) != int(robot_enc.feature_dim):
                    raise HRAlignError(f"{vname}: human encoder gives {human_enc.feature_dim}-d features, robot "
                                       f"encoder {robot_enc.feature_dim}-d; they must agree")
            if source is not None:
                feats = feats or {}
                for d, cs in need.items():  # human clips through the frozen base, robot clips adapted
                    enc = human_enc if d == "human" else robot_enc
                    have = feats.setdefault(d, {})
                    missing = [int(c) for c in cs if int(c) not in have]
                    have.update(encode_clips(enc, pairs, d, missing, placement=placement))
            table = demo_table(pairs, feats if source is not None else None, clips)
            run = vdir / f"seed{s}"
            run.mkdir(exist_ok=True)
            (run / "metrics.jsonl").unlink(missing_ok=True)
            t_train = time.perf_counter()
            instr = None
            stage_logs: dict[str, Any] = {}
            fit: float | None = None  # not measured for the latent chain's rows
            if use_latent:
                policy, stage_logs = train_sim_latent(pairs, (feats or {}).get("human", {}), table, latent, cfg.steps,
                                                      cfg.batch_size, s, run)
                final = stage_logs["action"]
            elif use_gr1:
                policy, finals, instr = train_sim_gr1(pairs, feats, clips, gr1, pretrain_steps, cfg.steps,
                                                      cfg.batch_size, s, run, lr=cfg.lr)
                final = finals.get("action", {})
                fit = gr1_demo_mse(policy, pairs, feats, clips, instr)
            else:
                fdim = int(table["features"].shape[1])
                torch.manual_seed(s)
                policy = BCPolicy(BCConfig(head="bc", proprio=True), fdim, int(table["action"].shape[1]),
                                  int(table["state"].shape[1]))
                policy.fit_head(table["action"])
                train = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seed=s,
                                    log_every=max(1, cfg.steps // 10), checkpoint_every=cfg.steps,
                                    **({"lr": float(cfg.lr)} if cfg.lr is not None else {}))
                final = run_stage(policy, "action", table, None, train, cfg.steps, run, progress=False)
                fit = bc_demo_mse(policy, table)
            t_train = time.perf_counter() - t_train
            per_task: dict[str, float] = {}
            per_goal: dict[str, list[int]] = {}
            t_roll = time.perf_counter()
            for ti, t in enumerate(tasks):
                outcome: list[int] = []
                for lo in range(0, cfg.rollouts, n_envs):
                    chunk = goals[t][lo:lo + n_envs]
                    outcome += [int(ok) for ok in rollout(envs[t], policy, robot_enc if source is not None else None,
                                                          chunk, cfg.max_steps, placement,
                                                          instr[ti] if instr is not None else None,
                                                          human_view=vname in human_view)]
                    if bar is not None:
                        bar.update(len(chunk))
                per_goal[t] = outcome
                per_task[t] = sum(outcome) / cfg.rollouts
            rec = {"seed": s, "success": float(np.mean(list(per_task.values()))), "per_task": per_task,
                   "per_goal": per_goal,
                   "demo_frames": int(table["action"].shape[0]), "demo_clips": {d: len(c) for d, c in clips.items()},
                   "final_loss": final.get("action_loss"), "demo_mse": fit, "train_s": t_train,
                   **({"latent_final": stage_logs.get("latent")} if use_latent else {}),
                   "rollout_s": time.perf_counter() - t_roll}
            write_text_atomic(done, json.dumps(rec, indent=2))
            per_seed.append(rec)
        row = {"source": source.to_dict() if source is not None else None,
               "policy": ("latent" if latent is not None else cfg.policy) if source is not None else "bc",
               **({"latent": latent.to_dict()} if latent is not None and source is not None else {}),
               **({"gr1": gr1.to_dict(), "pretrain_steps": pretrain_steps}
                  if cfg.policy == "gr1" and source is not None else {}),
               "per_seed": per_seed, "resumed_seeds": resumed_seeds,
               **_stats([r["success"] for r in per_seed]),
               "per_task": {t: _stats([r["per_task"][t] for r in per_seed]) for t in tasks},
               "seconds": time.perf_counter() - t0}
        results["variants"][vname] = row
    if bar is not None:
        bar.close()
    for task_envs in envs.values():
        for env in task_envs:
            env.close()
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
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
    return "\n".join(lines)
