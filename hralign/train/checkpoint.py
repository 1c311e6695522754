"""Resumable checkpoints: the only code that knows their layout (timm's ``CheckpointSaver`` keeps the last N).

::

    OUT/checkpoints/step_00000300/
        model.safetensors   the trainer's tensors (trainable weights and the buffers it needs)
        state.pt            {"phase", "phase_index", "step", "updates", "metrics_lines", "world_size",
                             "optimizer", "log_window", "extra"}; read with torch.load(weights_only=True)

Each checkpoint is written as a whole under a temporary name and renamed (``atomic_dir``), so a
kill leaves the previous ones intact; ``updates`` (optimiser steps over all phases) names it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hralign.atomic import atomic_dir
from hralign.errors import HRAlignError

DIRNAME = "checkpoints"
_PREFIX = "step_"


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    model: dict[str, torch.Tensor]
    state: dict[str, Any]


class CheckpointSaver:
    """Writes ``OUT/checkpoints/step_N`` atomically and keeps the newest ``keep``."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.dir, self.keep = Path(run_dir) / DIRNAME, keep

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary ``.step_*.tmp`` dirs are not listed)."""
        return sorted(p for p in self.dir.glob(f"{_PREFIX}*") if (p / "state.pt").is_file()) if self.dir.is_dir() else []

    def save(self, updates: int, model: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
        target = self.dir / f"{_PREFIX}{updates:08d}"
        with atomic_dir(target) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, str(tmp / "model.safetensors"))
            torch.save({**state, "updates": updates}, tmp / "state.pt")
        for old in self.all()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def latest(self) -> Checkpoint | None:
        found = self.all()
        if not found:
            return None
        path = found[-1]
        try:
            model = load_file(str(path / "model.safetensors"))
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged file: safetensors/pickle/zip errors of many kinds
            raise HRAlignError(f"{path}: unreadable checkpoint ({e}); delete it to resume from the one before") from e
        return Checkpoint(path, model, state)

