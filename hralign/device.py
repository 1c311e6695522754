"""The one place that turns ``--device`` and ``--precision`` into a torch device and an autocast.

Every command that runs a network (training and inference alike) takes the same two options,
defined once here (:class:`DeviceConfig`) and resolved once here (:func:`resolve`), so
``--device cuda`` on a machine without CUDA and ``--precision bf16`` where bf16 does not run fail
the same way everywhere: one line naming the option (see docs/design.md, "Inference devices and sharding").

Under ``torchrun`` / ``accelerate launch`` each process uses its own GPU: ``cuda`` means
``cuda:LOCAL_RANK``. Accelerate users pass :attr:`Placement.mixed_precision` and
``cpu=placement.device.type == "cpu"`` to ``Accelerator``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ContextManager

from hralign.errors import HRAlignError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it, so CLI modules build their options from
# DeviceConfig without paying for importing torch (a config imports no torch, as LeRobot's do).

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
DEVICE_HELP = "Torch device: auto (CUDA, else MPS, else CPU), cpu, cuda (cuda:N for one GPU), mps."
PRECISION_HELP = "Numeric precision: fp32, or bf16 (autocast on CUDA; weights and outputs stay fp32)."


def _check_name(device: object) -> str:
    if not isinstance(device, str) or not (device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit())):
        raise HRAlignError(f"`--device` should be one of {', '.join(DEVICES)} (or cuda:N) "
                           f"but the value passed is {device!r}")
    return device


def _check_precision_name(precision: object) -> str:
    if precision not in PRECISIONS:
        raise HRAlignError(f"`--precision` should be one of {', '.join(PRECISIONS)} "
                           f"but the value passed is {precision!r}")
    return precision  # type: ignore[return-value]


@dataclass(frozen=True)
class DeviceConfig:
    """Where and in which precision a command runs; click options come from these fields."""

    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})

    def __post_init__(self) -> None:
        # Names only: whether the hardware is there is checked by `resolve`, on the machine that runs.
        _check_name(self.device)
        _check_precision_name(self.precision)


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for ``--device`` (``auto``: CUDA, else MPS, else CPU).

    Parameters
    ----------
    device : one of :data:`DEVICES` or ``cuda:N``.
    local_rank : this process's GPU under a launcher; default ``$LOCAL_RANK`` (0 when unset).
        Only used for ``cuda`` / ``auto`` on CUDA, so each process of a run gets its own GPU.
    """
    import torch

    name = _check_name(device)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else ("mps" if _mps_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HRAlignError(f"`--device {device}`: CUDA is not available on this machine; use --device cpu or auto")
        index = local_rank if name == "cuda" else int(name[5:])
        if index >= torch.cuda.device_count():
            raise HRAlignError(f"`--device {device}`: GPU {index} requested but torch sees "
                               f"{torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    if name == "mps":
        if not _mps_available():
            raise HRAlignError(f"`--device {device}`: MPS (Apple GPU) is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    return torch.device("cpu")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run: bf16 needs a CUDA GPU with bf16 support.

    CPU and MPS run fp32 only: bf16 autocast there is slower than fp32 on most CPUs and
    incomplete on MPS, so asking for it is a mistake worth one clear line.
    """
    import torch

    _check_precision_name(precision)
    if precision == "bf16":
        if device.type != "cuda":
            raise HRAlignError(f"`--precision bf16` needs a CUDA device but the device is {device.type}; "
                               f"use --precision fp32")
        if not torch.cuda.is_bf16_supported():
            raise HRAlignError(f"`--precision bf16`: {torch.cuda.get_device_name(device)} has no bf16 support; "
                               f"use --precision fp32")


@dataclass(frozen=True)
class Placement:
    """A resolved :class:`DeviceConfig`: the device and precision a process runs in."""

    device: torch.device
    precision: str

    @property
    def mixed_precision(self) -> str:
        """Accelerate's name for the precision (``Accelerator(mixed_precision=...)``)."""
        return "bf16" if self.precision == "bf16" else "no"

    def autocast(self) -> ContextManager:
        """bf16 autocast on CUDA for ``--precision bf16``; a no-op context for fp32."""
        import torch

        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_dict(self) -> dict:
        return {"device": str(self.device), "precision": self.precision}


def resolve(config: DeviceConfig | None = None, local_rank: int | None = None) -> Placement:
    """Check ``config`` against this machine and return where to run (errors name the option)."""
    config = config if config is not None else DeviceConfig()
    if not isinstance(config, DeviceConfig):
        raise HRAlignError(f"expected a DeviceConfig but got {type(config).__name__}")
    device = resolve_device(config.device, local_rank)
    check_precision(config.precision, device)
    return Placement(device=device, precision=config.precision)
