"""Training a policy kind on demos whose features are already cached: the closed-loop evaluation's path.

``hralign sim eval`` (and the benchmarks) encode a protocol's demo clips once per encoder and train
one policy per seed on them. What a kind needs for that is a :class:`DemoSet` (the pairs file, the
cached per-clip features of each domain, the clips that train and those held out) and a
:class:`DemoTraining` (seed, steps, batch, learning rate, early stopping, run directory and the
kind's own training options); its ``fit_demos`` hook returns the trained policy, the last logs of
each stage and the instruction embeddings it acts with. Per-frame kinds share
:func:`fit_frame_demos` (R3M's BC protocol is the built-in one); GR-1 and the latent policy have
their own (:mod:`hralign.policy.gr1.demos`, :func:`fit_latent_demos`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy.config import TrainConfig
from hralign.policy.data import token_table
from hralign.policy.labels import load_token_labels
from hralign.policy.registry import make_policy
from hralign.policy.train import run_stage
from hralign.train.early_stop import EarlyStopConfig, EarlyStopping


@dataclass
class DemoSet:
    """The demos a policy trains on: per-clip cached features (None: proprio only) of the listed clips."""

    pairs: PairsFile
    feats: dict[str, dict[int, torch.Tensor]] | None
    clips: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray] = field(default_factory=dict)
    # human video of another file for a kind's video stage (GR-1's ``pretrain_pairs``): the file and the
    # cached features of its human clips
    video: tuple[PairsFile, dict[int, torch.Tensor]] | None = None

    def table(self, heldout: bool = False) -> dict[str, torch.Tensor]:
        """One row per frame of the training (or held-out) clips: features, state, action, task."""
        return demo_table(self.pairs, self.feats, self.heldout if heldout else self.clips)


@dataclass
class DemoTraining:
    """How one seed's policy trains on a :class:`DemoSet`."""

    seed: int
    steps: int
    batch_size: int
    run: Path
    lr: float | None = None
    early_stop: EarlyStopConfig | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the kind's own (GR-1: pretrain_steps; latent: labels)
    train_overrides: dict[str, Any] = field(default_factory=dict)  # other fields of the kind's training config
    extra: Callable[..., dict[str, Any]] | None = None  # more figures at each early-stopping evaluation


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


def table_dims(table: dict[str, torch.Tensor]) -> dict[str, int]:
    """``dims`` of a policy reading one frame of a demo ``table`` (no instruction)."""
    return {"feature_dim": int(table["features"].shape[1]), "action_dim": int(table["action"].shape[1]),
            "state_dim": int(table["state"].shape[1]), "instruction_dim": 0}


@torch.no_grad()
def table_mse(policy: nn.Module, table: dict[str, torch.Tensor]) -> float:
    """Mean squared error of a per-frame policy's actions (eval mode, mode restored) on the frames of ``table``."""
    was = policy.training
    policy.eval()
    try:
        pred = policy.select_action({"features": table["features"], "state": table["state"]})
    finally:
        policy.train(was)
    return float(((pred - table["action"]) ** 2).mean())


def fit_table(policy: nn.Module, table: dict[str, torch.Tensor], training: DemoTraining,
              heldout: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train a fresh per-frame ``policy`` (head statistics fitted here) on a demo ``table`` by hralign.policy's
    loop; (policy in eval mode, final logs). With ``training.early_stop`` enabled: the action error on the
    ``heldout`` table every ``early_stop.every`` steps, the best weights kept, the record (curve included)
    in ``logs["early_stop"]``; ``training.extra(policy)`` adds figures to each evaluation."""
    policy.fit_head(table["action"])
    early_stop, steps = training.early_stop, training.steps
    stopper = None
    if early_stop is not None and early_stop.enabled:
        if heldout is None or not len(heldout["action"]):
            raise HRAlignError("early stopping needs held-out demo clips (none were held out)")
        extra = training.extra
        stopper = EarlyStopping(policy, lambda: table_mse(policy, heldout), early_stop,
                                (lambda: extra(policy)) if extra is not None else None)
    train = TrainConfig(**{"steps": steps, "batch_size": training.batch_size, "seed": training.seed,
                           "log_every": max(1, steps // 10), "checkpoint_every": steps,
                           "eval_every": early_stop.every if stopper is not None else 0,
                           **({"lr": float(training.lr)} if training.lr is not None else {}),
                           **training.train_overrides})
    final: dict[str, Any] = run_stage(policy, "action", table, None, train, steps, training.run, progress=False,
                                      evaluate=stopper.evaluate if stopper is not None else None,
                                      stop=stopper.stop if stopper is not None else None)
    if stopper is not None:
        final = {**final, "early_stop": stopper.finish(steps)}
    return policy.eval(), final


def fit_frame_demos(config: Any, demos: DemoSet, training: DemoTraining) -> tuple[nn.Module, dict[str, Any], None]:
    """The per-frame kinds' ``fit_demos``: a fresh policy of ``config`` (seeded) trained on the demo frames;
    (policy, {"action": final logs (+ "early_stop")}, no instructions)."""
    table = demos.table()
    torch.manual_seed(training.seed)
    policy = make_policy(config, table_dims(table))
    held = demos.table(heldout=True) if demos.heldout else None
    policy, final = fit_table(policy, table, training, held)
    finals: dict[str, Any] = {"action": {k: v for k, v in final.items() if k != "early_stop"}}
    if "early_stop" in final:
        finals["early_stop"] = final["early_stop"]
    return policy, finals, None


def frame_demo_error(policy: nn.Module, demos: DemoSet, instructions: torch.Tensor | None = None) -> float:
    """The per-frame kinds' ``demo_error``: action MSE on the demo frames the policy trained on."""
    return table_mse(policy, demos.table())


def no_demo_error(policy: nn.Module, demos: DemoSet, instructions: torch.Tensor | None = None) -> None:
    """``demo_error`` of a kind whose fit to its demos is not measured (the latent chain's rows): None."""
    return None


def latent_demo_clips(options: dict[str, Any], pairs: PairsFile, clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The latent policy's ``demo_clips``: the demos, and every human clip when the latent stage runs."""
    if int(options.get("latent_steps", TrainConfig().latent_steps)):
        return {**clips, "human": np.arange(pairs.num_clips("human"))}
    return clips


def fit_latent_demos(config: Any, demos: DemoSet, training: DemoTraining) -> tuple[nn.Module, dict[str, Any], None]:
    """LAPA's recipe on demos (Ye et al., 2024): the latent stage on every LAM-labelled human clip of the
    file (``training.options``: ``labels``, a labels.h5, and ``latent_steps``, default
    :class:`TrainConfig`'s; 0 = the control without it), then the action stage on the demo frames; the same init with and without the latent stage."""
    if "labels" not in training.options:
        raise HRAlignError("the latent policy trains on LAM labels: pass the labels.h5 of the evaluation file")
    latent_steps = int(training.options.get("latent_steps", TrainConfig().latent_steps))
    pairs, steps = demos.pairs, training.steps
    table = demos.table()
    labels = load_token_labels(training.options["labels"], pairs)
    rows = labels.select("human", np.arange(pairs.num_clips("human")))
    if not len(rows[0]):
        raise HRAlignError(f"{training.options['labels']}: no human-view labels for {pairs.path}; the latent stage "
                           "trains on them")
    torch.manual_seed(training.seed)  # the same init with and without the latent stage
    policy = make_policy(config, {**table_dims(table), "num_tokens": labels.num_tokens,
                                  "codebook_size": labels.codebook_size})
    policy.fit_head(table["action"])
    longest = max(steps, latent_steps)
    train = TrainConfig(steps=steps, batch_size=training.batch_size, seed=training.seed,
                        log_every=max(1, longest // 10), checkpoint_every=longest)
    finals: dict[str, Any] = {"latent": None}  # None: the control row, without the latent stage
    if latent_steps:
        human = (demos.feats or {}).get("human", {})
        tokens = token_table(pairs, "human", human, rows, config.context_frames)
        finals["latent"] = run_stage(policy, "latent", tokens, None, train, latent_steps, training.run / "latent",
                                     progress=False)
    policy.freeze_trunk(not config.finetune_trunk)
    finals["action"] = run_stage(policy, "action", table, None, train, steps, training.run / "action", progress=False)
    return policy, finals, None
