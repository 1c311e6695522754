"""``--log-with``: the run's metrics also go to the experiment trackers users already read, through Accelerate.

``metrics.jsonl`` stays the record (resume, reports and tests read it); a tracker gets a copy of
each of its lines, as scalars, from Accelerate's own tracker API (``Accelerator(log_with=...,
project_dir=OUT/trackers)``, ``init_trackers``, ``log``, ``end_training``), on the main process.
Trackers write under the run directory and stay offline unless the user says otherwise: TensorBoard
writes event files; wandb runs with ``mode="offline"`` unless ``WANDB_MODE`` is set.

Step: a metrics line's ``step`` counts the steps of its phase (the policy's stages each start at
1), so a tracker gets ``step`` plus the optimiser updates of the phases before it: the same number
as metrics.jsonl for one-phase trainers, a steadily growing one for two. A resumed run starts
TensorBoard's writer with ``purge_step`` just after its checkpoint, so what an interrupted run wrote
past that point is hidden by TensorBoard's reader, as metrics.jsonl is cut back to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import accelerate.tracking

from hralign.errors import HRAlignError
from hralign.train.config import TRACKERS, parse_log_with

TRACKER_DIR = "trackers"


def _tensorboard_kwargs(out: Path, resume_step: int | None) -> dict[str, Any]:
    # SummaryWriter(purge_step=N) hides events at step >= N written by the interrupted run
    return {} if resume_step is None else {"purge_step": resume_step + 1}


def _wandb_kwargs(out: Path, resume_step: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dir": str(out / TRACKER_DIR)}
    if "WANDB_MODE" not in os.environ:  # the user's choice (online, disabled) wins
        kwargs["mode"] = "offline"
    return kwargs


# name -> init kwargs of Accelerate's tracker for run directory ``out`` (resume_step: updates of the
# checkpoint resumed from, None for a fresh run). One entry per tracker hralign keeps offline.
TRACKER_INIT: dict[str, Callable[[Path, int | None], dict[str, Any]]] = {
    "tensorboard": _tensorboard_kwargs,
    "wandb": _wandb_kwargs,
}
# the package each tracker needs (the `pip install` a user is told)
TRACKER_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(log_with: str) -> tuple[str, ...]:
    """The trackers of ``--log-with`` (checked by the config) whose packages are installed, else one line."""
    names = parse_log_with(log_with)
    installed = [str(t) for t in accelerate.tracking.get_available_trackers() if str(t) in TRACKERS]
    missing = [n for n in names if n not in installed]
    if missing:
        raise HRAlignError(f"`--log-with` {log_with}: the {missing[0]} package is not installed (installed trackers: "
                           f"{', '.join(installed) or 'none'}); pip install {TRACKER_PACKAGE[missing[0]]} "
                           "(or the hralign[track] extra), or leave --log-with at none")
    return names


def tracker_init_kwargs(names: tuple[str, ...], out: Path, resume_step: int | None) -> dict[str, dict[str, Any]]:
    """``init_kwargs`` for ``Accelerator.init_trackers``: per tracker, where it writes and how it resumes."""
    return {n: TRACKER_INIT[n](Path(out), resume_step) for n in names}


def tracker_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's hyper-parameters a tracker accepts (bool, int, float, str; nested parts dotted)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in tracker_config(v).items()})
        elif isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


def tracker_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one metrics line as tracker tags: nested keys joined by ``/``, under the line's
    ``stage`` when it has one (``action/loss``); ``step``, text, flags and lists are left out."""
    prefix = record.get("stage")
    out: dict[str, float] = {}

    def walk(value: Any, tag: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{tag}/{k}" if tag else str(k))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)

    for key, value in record.items():
        if key not in ("step", "stage"):
            walk(value, f"{prefix}/{key}" if isinstance(prefix, str) else key)
    return out
