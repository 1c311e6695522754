"""AdamW and the learning-rate schedule of a run, from one config (LeRobot's ``make_optimizer_and_scheduler``).

The schedule is timm's (``timm.scheduler.create_scheduler_v2``), stepped per update: the lr of
update ``t`` is a function of ``t`` and the config only, so a resumed run sets it from the step
(:func:`set_lr_for_step`) instead of restoring scheduler state, and ``--steps`` may grow on resume.
"""

from __future__ import annotations

from typing import Iterable

import torch
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from hralign.train.config import TrainConfig

_TIMM_NAMES = {"constant": "constant", "cosine": "cosine", "linear": "poly"}


def make_optimizer_and_scheduler(params: Iterable[torch.nn.Parameter], cfg: TrainConfig, steps: int,
                                 weight_decay: float = 0.0) -> tuple[torch.optim.Optimizer, Scheduler]:
    """AdamW over ``params`` and the schedule of ``cfg.lr_schedule`` over ``steps`` updates.

    Warm-up (``cfg.warmup`` updates, linear from 0) comes before the schedule's ``steps - warmup``
    updates (timm's ``warmup_prefix``); cosine and linear end at 0 at ``steps``.
    """
    optimizer = torch.optim.AdamW(list(params), lr=cfg.lr, weight_decay=weight_decay)
    scheduler, _ = create_scheduler_v2(optimizer, sched=_TIMM_NAMES[cfg.lr_schedule],
                                       num_epochs=max(1, steps - cfg.warmup), warmup_epochs=cfg.warmup,
                                       warmup_lr=0.0, warmup_prefix=True, min_lr=0.0, decay_rate=1.0,
                                       step_on_epochs=False, updates_per_epoch=1)
    set_lr_for_step(scheduler, 0)
    return optimizer, scheduler


def set_lr_for_step(scheduler: Scheduler, step: int) -> float:
    """Set the optimiser's lr for update number ``step`` (0-based); returns it."""
    scheduler.step_update(num_updates=step)
    return float(scheduler.optimizer.param_groups[0]["lr"])
