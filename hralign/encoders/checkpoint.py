"""Reading weights: safe unpickling, checksums and a readable key/shape mismatch report.

One module for all weight reading, as LeRobot's ``pretrained.py``: the
caller gets one line naming the file and the first disagreeing keys, never a raw
``load_state_dict`` dump.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from hralign.errors import HRAlignError

_SHOW = 3  # how many disagreeing keys a message names


def torch_load(path: str | os.PathLike, trust_checkpoint: bool = False) -> Any:
    """``torch.load`` on CPU, ``weights_only=True`` unless the user opted in with ``trust_checkpoint``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as e:
        if not trust_checkpoint:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise HRAlignError(
                f"{path}: torch.load(weights_only=True) refused this pickle ({first[:160]}); "
                "if you trust its source, pass --trust-checkpoint (trust_checkpoint=True)"
            ) from e
        raise HRAlignError(f"{path}: not a readable torch checkpoint ({e})") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise HRAlignError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0][:200]})") from e


def describe_mismatch(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]
) -> str | None:
    """One line listing the first missing / unexpected / wrong-shape keys, or None when they agree."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {list(given[k].shape)} vs expected {list(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    return "; ".join(parts) if parts else None


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], where: str, what: str) -> None:
    """Strict ``load_state_dict`` whose failure is one readable HRAlignError line."""
    expected = module.state_dict()
    problem = describe_mismatch(expected, state)
    if problem:
        raise HRAlignError(f"{where}: checkpoint does not fit {what} ({problem})")
    module.load_state_dict(state, strict=True)


def load_safetensors_checked(module: nn.Module, path: str | os.PathLike, what: str) -> None:
    """Read a safetensors file into ``module`` strictly; unreadable file or key mismatch -> one line."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise HRAlignError(f"{path}: cannot read safetensors weights ({e})") from e
    load_state_checked(module, state, str(path), what)


def check_weights_file(path: str | os.PathLike, hint: str | None) -> Path:
    """The weights path as a Path, or an error saying where such files usually live (nothing is downloaded)."""
    p = Path(path).expanduser()
    if not p.is_file():
        where = f" {hint}" if hint else ""
        raise HRAlignError(
            f"weights file {p} not found.{where} hralign never downloads weights: pass the path of a local file"
        )
    return p


def unwrap_state(obj: Any, keys: tuple[str, ...] = ("features", "model", "state_dict")) -> Any:
    """The state dict inside a training checkpoint: the first of ``keys`` holding a dict (D4R/MAE/timm layouts)."""
    if isinstance(obj, dict):
        for key in keys:
            if isinstance(obj.get(key), dict):
                return obj[key]
    return obj


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Keys starting with ``prefix``, with it removed (R3M's ``module.convnet.``, D4R's ``_model.``)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
