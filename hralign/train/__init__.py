"""The one training layer of hralign (pretrain, adapt, LAM, policy), built on Hugging Face Accelerate.

A trainer supplies its batches, its ``forward -> (loss, logs)``, its evaluation and its extra
state as a :class:`~hralign.train.loop.Phase`; the layer owns devices, precision, processes, the
run directory, checkpoints, metrics and the resume rule (docs/training.md).

Modules, one job each: :mod:`~hralign.train.config` (the shared fields), :mod:`~hralign.train.accelerator`
(device/precision checks -> ``Accelerator``), :mod:`~hralign.train.rundir` (create / overwrite /
resume), :mod:`~hralign.train.checkpoint` (atomic, last N), :mod:`~hralign.train.metrics`
(metrics.jsonl), :mod:`~hralign.train.optim` (AdamW + timm schedule), :mod:`~hralign.train.loop`
(the step and the phase loop).
"""

from hralign.train.config import LR_SCHEDULES, RESUMABLE_FIELDS, TrainConfig
from hralign.train.loop import Phase, Session, open_session

__all__ = ["LR_SCHEDULES", "RESUMABLE_FIELDS", "Phase", "Session", "TrainConfig", "open_session"]
