"""Saving and loading LAM directories (the one module that reads and writes LAM weights).

Layout of a LAM directory (what ``hralign lam train --out DIR`` leaves)::

    DIR/lam.json            {"hralign_format": "lam", "hralign_version": 1, "config": LAMConfig,
                             "weights_sha256": ..., "train": {...}}
    DIR/model.safetensors   the IDM, quantiser and FDM state dict
    DIR/metrics.jsonl       training log (one JSON object per line)
    DIR/run.json            the training run's options (hralign.train: what --resume compares)
    DIR/checkpoints/        resumable state (hralign.train.checkpoint)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from hralign.atomic import atomic_path, write_text_atomic
from hralign.encoders.checkpoint import load_safetensors_checked
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.metafile import read_meta_json
from hralign.lam.config import LAM_FORMAT, LAM_FORMAT_VERSION, LAMConfig
from hralign.lam.model import LatentActionModel

META_FILE = "lam.json"
WEIGHTS_FILE = "model.safetensors"


def save_state(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """State dict -> safetensors, atomically (contiguous CPU copies, as safetensors requires)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp))


def load_state(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load safetensors weights into ``model``; missing/unexpected keys are one readable error."""
    load_safetensors_checked(model, path, "the LAM config")


def save_lam(model: LatentActionModel, directory: str | os.PathLike, train: dict[str, Any] | None = None) -> Path:
    """Write ``lam.json`` + ``model.safetensors`` into ``directory`` (each file atomically)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_state(model, d / WEIGHTS_FILE)
    meta = {"hralign_format": LAM_FORMAT, "hralign_version": LAM_FORMAT_VERSION, "config": model.config.to_dict(),
            "weights_sha256": sha256_file(d / WEIGHTS_FILE), "train": train or {}}
    write_text_atomic(d / META_FILE, json.dumps(meta, indent=2) + "\n")
    return d


def read_lam_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``lam.json`` (format name and version) of a LAM directory."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not d.is_dir():
        raise HRAlignError(f"{d}: LAM directory not found (expected a directory written by `hralign lam train`)")
    return read_meta_json(meta_path, (LAM_FORMAT,), LAM_FORMAT_VERSION, "`hralign lam train`")


def load_lam(directory: str | os.PathLike, verify: bool = True) -> LatentActionModel:
    """Rebuild a LAM from its directory, in eval mode. ``verify`` checks the weights' sha256."""
    d = Path(directory)
    meta = read_lam_meta(d)
    config = LAMConfig.from_dict(meta.get("config"), source=str(d / META_FILE))
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise HRAlignError(f"{weights}: not found (the LAM directory has lam.json but no weights)")
    if verify and meta.get("weights_sha256") and sha256_file(weights) != meta["weights_sha256"]:
        raise HRAlignError(f"{weights}: sha256 does not match lam.json (file changed or corrupt)")
    model = LatentActionModel(config)
    load_state(model, weights)
    return model.eval()
