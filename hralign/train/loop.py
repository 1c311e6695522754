"""The training step and the phase loop shared by every trainer (LeRobot's ``update_policy`` + train loop).

A trainer opens a :class:`Session` (accelerator, run directory, checkpoints, metrics), then runs
one or more :class:`Phase` (the policy has two stages; the others one). A phase is what is the
trainer's own: the module to train, ``forward(model, step) -> (loss, logs)`` that builds this
process's share of global batch ``step`` (a function of the seed and the step, so resume is
exact), an evaluation, and extra state. The session does the rest:

* one :func:`train_step`: ``accelerator.autocast()``, ``accelerator.backward``, gradient clipping,
  optimiser step; the lr of update ``t`` is set from ``t`` (timm schedule);
* the torch RNG is seeded from (seed, update) before each step (quantiser noise, dropout);
* under several processes BatchNorm layers normalise with the global batch's statistics, and a
  trainer passes ``Session.gather`` (rows with gradients) and ``Session.masked_mean`` (a mean over
  the counted positions of the global batch) to its loss;
* every ``log_every`` steps the mean of the step logs goes to metrics.jsonl (``loss`` averaged over
  processes) and to the ``--log-with`` trackers (:mod:`hralign.train.trackers`), every
  ``eval_every`` the phase's evaluation (main process), every ``checkpoint_every`` and at the end
  of a phase a checkpoint (main process; all wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from hralign.errors import HRAlignError
from hralign.train.accelerator import make_accelerator
from hralign.train.checkpoint import Checkpoint, CheckpointSaver
from hralign.train.config import RESUMABLE_FIELDS, TrainConfig, parse_log_with
from hralign.train.distributed import Gather, MaskedMean, gather_with_grad, global_batchnorm, global_mean
from hralign.train.metrics import MetricsLog
from hralign.train.optim import make_optimizer_and_scheduler, set_lr_for_step
from hralign.train.rundir import RunDir
from hralign.train.trackers import tracker_config, tracker_init_kwargs, tracker_scalars

METRICS_FILE = "metrics.jsonl"


def mean_logs(window: list[dict[str, Any]]) -> dict[str, Any]:
    """Default summary of a logging window: the mean of each key over the steps that have it (``lr``: the last)."""
    keys = list(dict.fromkeys(k for entry in window for k in entry))
    out = {k: float(np.mean([e[k] for e in window if k in e])) for k in keys if k != "lr"}
    if "lr" in keys:
        out["lr"] = window[-1]["lr"]
    return out


@dataclass
class Phase:
    """What one stage of a trainer supplies; see the module docstring.

    ``forward(model, step)`` receives the prepared (DDP-wrapped when several processes) module and
    the 0-based step of this phase. ``evaluate(step)`` runs on the main process. ``after_step(step)``
    runs on every process after the optimiser step (the LAM's dead-code restart); its logs join
    that step's. ``tensors``/``load_tensors`` choose what the checkpoint stores (default: the whole
    ``model.state_dict()``); ``extra_state``/``load_extra_state`` add picklable-free state (tensors,
    numbers, lists, dicts) such as pretrain's generator. ``stop()``, asked after each evaluation,
    ends the phase early when True (held-out early stopping, :mod:`hralign.train.early_stop`: the
    phase then writes its checkpoint at that step and returns; the trainer restores what it keeps).
    """

    name: str
    steps: int
    model: nn.Module
    forward: Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, Any]]]
    params: list[nn.Parameter] | None = None
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    evaluate: Callable[[int], dict[str, Any]] | None = None
    stop: Callable[[], bool] | None = None
    after_step: Callable[[int], dict[str, Any] | None] | None = None
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]] = mean_logs
    tensors: Callable[[], dict[str, torch.Tensor]] | None = None
    load_tensors: Callable[[dict[str, torch.Tensor]], None] | None = None
    extra_state: Callable[[], dict[str, Any]] | None = None
    load_extra_state: Callable[[dict[str, Any]], None] | None = None
    record: dict[str, Any] = field(default_factory=dict)  # added to each metrics line, e.g. {"stage": "latent"}


def train_step(accelerator: Accelerator, model: nn.Module, forward: Callable, step: int,
               optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grad_clip: float) -> tuple[torch.Tensor, dict, float | None]:
    """One update: forward under autocast, backward, clip, optimiser step. Returns (loss, logs, grad norm)."""
    with accelerator.autocast():
        loss, logs = forward(model, step)
    accelerator.backward(loss)
    grad_norm = None
    if grad_clip > 0:
        grad_norm = float(accelerator.clip_grad_norm_(params, grad_clip))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, logs, grad_norm


class Session:
    """Accelerator + run directory + checkpoints + metrics of one training run (use :func:`open_session`)."""

    def __init__(self, cfg: TrainConfig, out: str | Path, kind: str, config: dict[str, Any],
                 resumable: tuple[str, ...] = (), find_unused_parameters: bool = False) -> None:
        self.cfg = cfg
        self.accelerator = make_accelerator(cfg, find_unused_parameters, out)
        acc = self.accelerator
        self.rank, self.world, self.is_main = acc.process_index, acc.num_processes, acc.is_main_process
        self.device = acc.device
        if cfg.batch_size % self.world:
            raise HRAlignError(f"`--batch-size` {cfg.batch_size} is not divisible by the {self.world} processes "
                               "(it is the global batch, split evenly)")
        self.run = RunDir(out, kind, config, RESUMABLE_FIELDS + tuple(resumable), cfg.resume, cfg.overwrite,
                          self.world, self.is_main)
        self.path = self.run.path
        self.saver = CheckpointSaver(self.path, cfg.keep_checkpoints)
        self.metrics = MetricsLog(self.path / METRICS_FILE, enabled=self.is_main)
        self.checkpoint: Checkpoint | None = self.saver.latest() if cfg.resume else None
        self.updates = int(self.checkpoint.state["updates"]) if self.checkpoint else 0
        self.trackers = parse_log_with(cfg.log_with)
        self.step_offset = 0  # optimiser updates of the phases before the current one (a tracker's step)
        self.gather: Gather | None = gather_with_grad if self.world > 1 else None
        # masked means (padded / invalid positions) over the global batch; alone the model's own mean
        self.masked_mean: MaskedMean | None = global_mean if self.world > 1 else None

    @property
    def resumed_from(self) -> int | None:
        """Optimiser updates of the checkpoint this run resumed from (None for a fresh start)."""
        return int(self.checkpoint.state["updates"]) if self.checkpoint else None

    def begin(self, record: dict[str, Any] | None = None) -> None:
        """Write run.json (main) and set up metrics.jsonl: empty, or cut back to the checkpoint's lines."""
        acc = self.accelerator
        acc.wait_for_everyone()  # every process has checked the run directory before the main one writes it
        self.run.begin({"global_batch": self.cfg.batch_size, "process_batch": self.local_batch,
                        "device": str(self.device), "precision": self.cfg.precision, **(record or {})})
        acc.wait_for_everyone()
        if self.checkpoint is not None:
            self.metrics.trim(int(self.checkpoint.state["metrics_lines"]))
        else:
            self.metrics.start()
        if self.trackers:  # main process only (Accelerate); the run directory exists now
            acc.init_trackers(f"hralign-{self.run.kind}", config=tracker_config(self.cfg.to_dict()),
                              init_kwargs=tracker_init_kwargs(self.trackers, self.path, self.resumed_from))

    @property
    def local_batch(self) -> int:
        return self.cfg.batch_size // self.world

    def local_rows(self, rows):
        """This process's share of the global batch ``rows`` (rank r takes the r-th equal slice)."""
        if len(rows) % self.world:
            raise HRAlignError(f"a batch of {len(rows)} does not split evenly over {self.world} processes; "
                               "choose --batch-size (and enough training samples) divisible by the process count")
        n = len(rows) // self.world
        return rows[self.rank * n:(self.rank + 1) * n]

    def log(self, record: dict[str, Any]) -> None:
        """A metrics line (main process writes; every process counts), copied to the trackers."""
        self.metrics.write(record)
        if self.trackers:
            step = self.step_offset + int(record["step"]) if "step" in record else self.updates
            self.accelerator.log(tracker_scalars(record), step=step)

    def run_phase(self, phase: Phase, index: int = 0, progress: bool = True) -> dict[str, Any]:
        """Train ``phase`` (the ``index``-th of the run) to ``phase.steps``; returns its last logged figures."""
        acc, cfg = self.accelerator, self.cfg
        if phase.stop is not None and self.world > 1:  # the evaluation runs on the main process only
            raise HRAlignError("early stopping runs in one process; train without a launcher")
        start, ck = 0, self.checkpoint
        params = phase.params if phase.params is not None else [p for p in phase.model.parameters() if p.requires_grad]
        optimizer, scheduler = make_optimizer_and_scheduler(params, cfg, phase.steps, phase.weight_decay)
        if ck is not None:
            done_index = int(ck.state["phase_index"])
            if done_index > index:
                return {}
            if done_index == index:
                start = int(ck.state["step"])
                if start > phase.steps:
                    raise HRAlignError(f"`--resume`: the checkpoint is at step {start} of {phase.name}, beyond "
                                       f"--steps {phase.steps}")
                (phase.load_tensors or _load_state_dict(phase.model))(ck.model)
                optimizer.load_state_dict(ck.state["optimizer"])
                if phase.load_extra_state is not None:
                    phase.load_extra_state(ck.state.get("extra") or {})
        self.step_offset = self.updates - start
        # the logging window of a checkpoint between two log lines is part of its state
        window: list[dict[str, Any]] = list(ck.state.get("log_window", [])) if start else []
        bn_hooks = global_batchnorm(phase.model, self.gather)  # BatchNorm over the global batch (several processes)
        model, optimizer = acc.prepare(phase.model, optimizer)
        model.train()
        last: dict[str, Any] = {}
        # closed on errors too, so a one-line error is the last thing on stderr
        with tqdm(total=phase.steps, initial=min(start, phase.steps), desc=f"{self.run.kind} {phase.name}", unit="step",
                  disable=not (progress and self.is_main), dynamic_ncols=True) as bar:
            for step in range(start, phase.steps):
                torch.manual_seed(cfg.seed * 1_000_003 + self.updates)  # quantiser noise, dropout: f(seed, update)
                lr = set_lr_for_step(scheduler, step)
                loss, logs, grad_norm = train_step(acc, model, phase.forward, step, optimizer, params, phase.grad_clip)
                done = step + 1
                self.updates += 1
                if phase.after_step is not None:
                    logs = {**logs, **(phase.after_step(done) or {})}
                # the loss of the global batch (mean over processes); the trainer's logs are this process's
                entry = {"loss": float(acc.reduce(loss.detach().float(), "mean")),
                         **{k: v for k, v in logs.items() if k != "loss"}, "lr": lr}
                if grad_norm is not None:
                    entry["grad_norm"] = grad_norm
                window.append(entry)
                if done % cfg.log_every == 0 or done == phase.steps:
                    last = phase.summarize(window)
                    self.log({"step": done, **phase.record, **last})
                    window = []
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(last.items())[:3] if isinstance(v, float)})
                if phase.evaluate is not None and cfg.eval_every and done % cfg.eval_every == 0 and done < phase.steps:
                    figures = phase.evaluate(done) if self.is_main else {}
                    self.log({"step": done, **phase.record, "eval": figures})
                    acc.wait_for_everyone()
                    if phase.stop is not None and phase.stop():
                        self.log({"step": done, **phase.record, "stopped": "early"})
                        self.save(phase, index, done, optimizer, window)
                        bar.update(1)
                        break
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == phase.steps:
                    self.save(phase, index, done, optimizer, window)
                bar.update(1)
        for hook in bn_hooks:
            hook.remove()
        model.eval()
        return last

    def save(self, phase: Phase, index: int, step: int, optimizer: torch.optim.Optimizer,
             window: list[dict[str, Any]]) -> None:
        """Main process writes checkpoint ``step_<updates>`` (keeping the newest N); every process waits."""
        if self.is_main:
            tensors = phase.tensors() if phase.tensors is not None else phase.model.state_dict()
            self.saver.save(self.updates, tensors, {
                "phase": phase.name, "phase_index": index, "step": step, "metrics_lines": self.metrics.lines,
                "world_size": self.world, "optimizer": optimizer.state_dict(), "log_window": window,
                "extra": phase.extra_state() if phase.extra_state is not None else {}})
        self.accelerator.wait_for_everyone()

    def finish(self) -> None:
        """Every process waits for the others, then the process group (if any) is closed."""
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()


def _load_state_dict(model: nn.Module) -> Callable[[dict[str, torch.Tensor]], None]:
    def load(tensors: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(tensors)
    return load


def open_session(cfg: TrainConfig, out: str | Path, kind: str, config: dict[str, Any],
                 resumable: tuple[str, ...] = (), find_unused_parameters: bool = False) -> Session:
    """Check devices, processes and the run directory (nothing written yet; :meth:`Session.begin` writes).

    ``config`` is what ``run.json`` records and ``--resume`` compares (nested dicts allowed);
    ``resumable`` names trainer fields that may change on resume besides the shared ones.
    """
    return Session(cfg, out, kind, config, resumable, find_unused_parameters)
