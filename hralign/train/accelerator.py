"""``--device`` / ``--precision`` checked on this machine, then one ``Accelerator`` for the run.

The checks are hralign.device's (one line naming the option, before anything is written);
devices, bf16 autocast and DDP over processes and nodes are Accelerate's, so a run starts the same
way alone, under ``torchrun`` and under ``accelerate launch`` (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from hralign.device import DeviceConfig, resolve
from hralign.train.config import TrainConfig
from hralign.train.trackers import TRACKER_DIR, check_trackers


def make_accelerator(cfg: TrainConfig, find_unused_parameters: bool = False, out: str | Path = ".") -> Accelerator:
    """The run's ``Accelerator`` for ``cfg.device`` / ``cfg.precision`` / ``cfg.log_with`` (checked first).

    ``step_scheduler_with_optimizer=False`` as LeRobot: the schedule is a function of the optimiser
    step, whatever the process count. ``broadcast_buffers=False``: buffers that change in training
    (BatchNorm statistics, codebook usage) are kept equal across processes by the trainers
    themselves, from statistics of the global batch. ``find_unused_parameters`` for trainers whose
    stages leave part of the model idle (the policy's action head during the latent stage).
    Trackers (``--log-with``) write under ``out/trackers``; they start in ``Session.begin``.
    """
    placement = resolve(DeviceConfig(cfg.device, cfg.precision))
    trackers = check_trackers(cfg.log_with)
    if placement.device.type == "cuda" and placement.device.index is not None:
        torch.cuda.set_device(placement.device)  # Accelerate uses the current GPU of this process
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=find_unused_parameters)
    return Accelerator(cpu=placement.device.type == "cpu", mixed_precision=placement.mixed_precision,
                       step_scheduler_with_optimizer=False, kwargs_handlers=[ddp],
                       log_with=list(trackers) or None, project_dir=str(Path(out) / TRACKER_DIR) if trackers else None)
