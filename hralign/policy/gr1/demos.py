"""GR-1 on cached demo features (``sim eval --kind gr1``): the demos as GR-1 windows, stage 1 on human-view clips.

GR-1's ``fit_demos`` trains :class:`hralign.policy.gr1.GR1Policy` where a per-frame kind trains on
demo frames, on the same cached features, demos and goals: stage 2 on exactly the protocol's demo
clips (actions + future), and, with ``pretrain_steps`` > 0, stage 1 before it on *every* human-view
clip of the file with its actions ignored (future prediction only, GR-1's video pretraining), or of
another file (``pretrain_pairs``: a video corpus of other tasks, as GR-1 pretrains on Ego4D).
Batches hold ``batch_size // history`` windows, so a step sees about as many frames as a BC step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy.demos import DemoSet, DemoTraining
from hralign.policy.gr1.config import GR1Config, GR1TrainConfig
from hralign.policy.gr1.model import GR1Policy
from hralign.policy.gr1.train import (ClipData, evaluate_windows, instruction_embeddings, run_stages, stage_tasks,
                                      video_human_clips, windows)
from hralign.train import open_session
from hralign.train.early_stop import EarlyStopConfig, EarlyStopping


def clip_data(pairs: PairsFile, feats: dict[str, dict[int, torch.Tensor]], clips: dict[str, np.ndarray],
              actions: bool, state: bool = True) -> ClipData:
    """One :class:`ClipData` over the clips of several domains (robot clips re-keyed after the human ones)."""
    n_h = pairs.num_clips("human") if "human" in pairs.domains else 0
    tasks = np.concatenate([pairs.clip_tasks(d) for d in ("human", "robot") if d in pairs.domains])
    data = ClipData("+".join(clips), {}, tasks)
    for d, cs in clips.items():
        off = 0 if d == "human" else n_h
        for c in cs:
            key = int(c) + off
            data.features[key] = feats[d][int(c)][:, None, :]  # one camera
            if state:
                data.state[key] = torch.from_numpy(np.asarray(pairs.read_clip(d, int(c), name="state"), np.float32))
            if actions:
                data.actions[key] = torch.from_numpy(np.asarray(pairs.read_clip(d, int(c), name="actions"), np.float32))
    return data


def train_sim_gr1(pairs: PairsFile, feats: dict[str, dict[int, torch.Tensor]], clips: dict[str, np.ndarray],
                  config: GR1Config, pretrain_steps: int, steps: int, batch_size: int, seed: int,
                  run: Path, lr: float | None = None, heldout: dict[str, np.ndarray] | None = None,
                  early_stop: EarlyStopConfig | None = None, train_overrides: dict[str, Any] | None = None,
                  extra: Callable[[GR1Policy, torch.Tensor | None], dict[str, Any]] | None = None,
                  video: tuple[PairsFile, dict[int, torch.Tensor]] | None = None,
                  ) -> tuple[GR1Policy, dict[str, dict[str, Any]], torch.Tensor | None]:
    """(trained policy, final logs per stage, instruction embeddings [K, E] or None) for one seed.

    ``lr``: AdamW's peak learning rate in both stages (default GR-1's recipe, :class:`GR1TrainConfig`);
    ``train_overrides``: other :class:`GR1TrainConfig` fields (the fit benchmark's factors). With
    ``early_stop`` enabled the action stage evaluates the action error on the ``heldout`` demo clips
    every ``early_stop.every`` steps, stops after ``patience`` evaluations without a new best and
    keeps the best weights; the record (curve included) is ``finals["early_stop"]``. ``extra(policy,
    instructions)`` adds figures to each evaluation (the benchmark's training-frame error). ``video``
    (a file and its human clips' features) is what stage 1 reads instead of ``pairs``' human clips; its
    tasks' instructions follow ``pairs``' (:func:`~hralign.policy.gr1.train.stage_tasks`).
    """
    demos = clip_data(pairs, feats, clips, actions=True)
    keys = np.asarray(sorted(demos.features), dtype=np.int64)
    plan = []
    fit = [f[:, 0] for f in demos.features.values()]
    vpairs, vhuman = video if video is not None else (pairs, feats.get("human", {}))
    if pretrain_steps:
        human_all = {"human": video_human_clips(vpairs)}
        # human video: no proprio (the learned "no state" token)
        vdata = clip_data(vpairs, {"human": vhuman}, human_all, actions=False, state=False)
        if video is not None:  # its tasks follow pairs' in the instruction table
            vdata.tasks = vdata.tasks + len(pairs.tasks)
        plan.append(("pretrain", pretrain_steps, vdata, windows(vdata, human_all["human"], config.history)))
        fit += [f[:, 0] for f in vdata.features.values()]
    plan.append(("action", steps, demos, windows(demos, keys, config.history)))
    instructions = instruction_embeddings(stage_tasks(pairs, vpairs), config.instruction)
    a = next(iter(demos.actions.values()))
    dims = {"feature_dim": int(fit[0].shape[1]), "cameras": 1, "action_dim": int(a.shape[1]),
            "state_dim": int(next(iter(demos.state.values())).shape[1]),
            "instruction_dim": int(instructions.shape[1]) if instructions is not None else 0}
    torch.manual_seed(seed)
    policy = GR1Policy(config, dims)
    policy.fit_head(torch.cat(list(demos.actions.values())))
    policy.fit_future(torch.cat(fit))
    policy.fit_inputs(torch.cat([f[:, 0] for f in demos.features.values()]), torch.cat(list(demos.state.values())))
    stopper = None
    if early_stop is not None and early_stop.enabled:
        if not heldout or not sum(len(v) for v in heldout.values()):
            raise HRAlignError("early stopping needs held-out demo clips (none were held out)")
        held = clip_data(pairs, feats, heldout, actions=True)
        held_keys = np.asarray(sorted(held.features), dtype=np.int64)
        stopper = EarlyStopping(
            policy, lambda: evaluate_windows(policy, held, held_keys, instructions)["action"]["mse_mean"], early_stop,
            (lambda: extra(policy, instructions)) if extra is not None else None)
    # the policy's training loop (hralign/train/), on CPU: the rollouts feed it CPU batches
    train = GR1TrainConfig(**{"pretrain_steps": pretrain_steps, "steps": steps,
                              "batch_size": max(2, batch_size // config.history), "seed": seed,
                              "log_every": max(1, steps // 10), "checkpoint_every": 0, "device": "cpu",
                              "overwrite": True, "eval_every": early_stop.every if stopper is not None else 0,
                              **({"lr": float(lr)} if lr is not None else {}), **(train_overrides or {})})
    session = open_session(train, run, "gr1-sim", {"train": train.to_dict()}, find_unused_parameters=True)
    session.begin()
    finals: dict[str, dict[str, Any]] = run_stages(
        policy, plan, train, instructions, session, progress=False,
        evaluate=stopper.evaluate if stopper is not None else None, stop=stopper.stop if stopper is not None else None)
    session.finish()
    if stopper is not None:
        finals["early_stop"] = stopper.finish(steps)
    return policy.cpu().eval(), finals, instructions


def gr1_demo_mse(policy: GR1Policy, pairs: PairsFile, feats: dict[str, dict[int, torch.Tensor]],
                 clips: dict[str, np.ndarray], instructions: torch.Tensor | None) -> float:
    """Mean squared error of the action at t (first of the chunk, from the history up to t, eval mode) against the
    recorded action on every frame of the demos it was trained on: how well it fits them, in action units
    (the BC row reports the same, :func:`hralign.sim.evaluate.bc_demo_mse`)."""
    demos = clip_data(pairs, feats, clips, actions=True)
    ev = evaluate_windows(policy, demos, np.asarray(sorted(demos.features), dtype=np.int64), instructions)
    return float(ev["action"]["mse_mean"])


def gr1_demo_clips(options: dict[str, Any], pairs: PairsFile, clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GR-1's ``demo_clips``: the demos, and every human clip when stage 1 runs on this file (it reads them all)."""
    if int(options.get("pretrain_steps", 0)) and not options.get("pretrain_pairs"):
        return {**clips, "human": np.arange(pairs.num_clips("human"))}
    return clips


def fit_gr1_demos(config: GR1Config, demos: DemoSet,
                  training: DemoTraining) -> tuple[GR1Policy, dict[str, Any], torch.Tensor | None]:
    """GR-1's ``fit_demos``: :func:`train_sim_gr1` on a :class:`~hralign.policy.demos.DemoSet`
    (``training.options``: ``pretrain_steps``, stage 1's length, default 0; ``pretrain_pairs``, the file
    whose human clips stage 1 reads, encoded into ``demos.video``)."""
    if demos.feats is None:
        raise HRAlignError("GR-1 reads image features; the proprio-only row is a per-frame kind")
    steps = int(training.options.get("pretrain_steps", 0))
    if steps < 0:
        raise HRAlignError(f"--pretrain-steps should be >= 0 but the value passed is {steps}")
    if training.options.get("pretrain_pairs") and demos.video is None:
        raise HRAlignError(f"--pretrain-pairs {training.options['pretrain_pairs']}: its human clips were not encoded")
    return train_sim_gr1(demos.pairs, demos.feats, demos.clips, config, steps, training.steps,
                         training.batch_size, training.seed, training.run, lr=training.lr, heldout=demos.heldout,
                         early_stop=training.early_stop, train_overrides=training.train_overrides or None,
                         extra=training.extra, video=demos.video)


def gr1_demo_error(policy: GR1Policy, demos: DemoSet, instructions: torch.Tensor | None) -> float:
    """GR-1's ``demo_error``: :func:`gr1_demo_mse` on the demos it trained on."""
    assert demos.feats is not None  # fit_gr1_demos refused a set without features (internal invariant)
    return gr1_demo_mse(policy, demos.pairs, demos.feats, demos.clips, instructions)
