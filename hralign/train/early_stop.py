"""A training budget chosen by held-out error: evaluate every K steps, keep the best weights, stop after P misses.

Why: policies of different kinds fit their demos at very different speeds (an MLP on BatchNormed
features fits 20 demos in a few hundred steps; a transformer needs more), so a closed-loop
comparison at an equal number of steps compares how fast each one fits, not what it does once
fitted. With early stopping each policy trains until its *own* held-out action error stops
improving and is rolled out with the weights of its best evaluation, so rows compare at equal fit.

Use: ``stopper = EarlyStopping(model, heldout_error, config)``; give ``stopper.evaluate`` and
``stopper.stop`` to the phase (:class:`hralign.train.loop.Phase`, with ``eval_every = config.every``),
then ``stopper.finish(steps)`` evaluates the last weights and loads the best ones. One process
only (the evaluation runs on the main process and the decision must be the same everywhere).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from hralign.errors import HRAlignError


@dataclass
class EarlyStopConfig:
    """When to evaluate the held-out error and when to give up waiting for it to improve."""

    every: int = field(default=0, metadata={"help": "Steps between held-out evaluations; 0 = off (train the fixed "
                                                    "number of steps, keep the last weights)."})
    patience: int = field(default=5, metadata={"help": "Evaluations without a new best held-out error before "
                                                       "training stops (the best weights are kept)."})
    min_improvement: float = field(default=0.01, metadata={"help": "Relative decrease of the held-out error that "
                                                                   "counts as a new best (0.01 = 1%)."})

    def __post_init__(self) -> None:
        for name, lo in (("every", 0), ("patience", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise HRAlignError(f"`{name}` should be an integer >= {lo} but the value passed is {v!r}")
        m = self.min_improvement
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1:
            raise HRAlignError(f"`min_improvement` should be a number in [0, 1) but the value passed is {m!r}")

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EarlyStopping:
    """Tracks ``error()`` (held-out, lower is better) over evaluations and keeps a copy of the best weights."""

    def __init__(self, model: nn.Module, error: Callable[[], float], config: EarlyStopConfig,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        """``extra()``: more figures recorded beside the held-out error at each evaluation (e.g. the training error)."""
        if not config.enabled:
            raise HRAlignError("early stopping needs `every` >= 1")
        self.model, self.error, self.config, self.extra = model, error, config, extra
        self.best = math.inf
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.misses = 0
        self.curve: list[dict[str, Any]] = []  # {"step", "heldout_mse", **extra()} per evaluation

    def evaluate(self, step: int) -> dict[str, Any]:
        """Held-out error after ``step`` steps; a new best (by ``min_improvement``) is copied and resets the misses."""
        e = float(self.error())
        if not math.isfinite(e):
            raise HRAlignError(f"held-out action error is {e} at step {step}; training diverged")
        self.curve.append({"step": int(step), "heldout_mse": e, **(self.extra() if self.extra is not None else {})})
        if e < self.best * (1.0 - self.config.min_improvement) or self.best_state is None:
            self.best, self.best_step, self.misses = e, int(step), 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.misses += 1
        return {"heldout_mse": e, "best_step": self.best_step, "best_heldout_mse": self.best}

    def stop(self) -> bool:
        return self.misses >= self.config.patience

    def finish(self, planned: int) -> dict[str, Any]:
        """After the phase: evaluate the final weights (unless it stopped early, just after an evaluation) and load
        the best ones; returns the record (best step and error, steps run of ``planned``, the curve)."""
        stopped = bool(self.curve) and self.stop()
        steps_run = self.curve[-1]["step"] if stopped else int(planned)
        if not stopped and (not self.curve or self.curve[-1]["step"] != steps_run):
            self.evaluate(steps_run)
        assert self.best_state is not None
        self.model.load_state_dict(self.best_state)
        return {"best_step": self.best_step, "best_heldout_mse": self.best, "steps_run": steps_run,
                "stopped_early": stopped, "curve": list(self.curve)}
