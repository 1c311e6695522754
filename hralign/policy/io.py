"""Saving and loading policy directories, and resolving the encoders a policy was trained on.

Layout of ``hralign policy train --out DIR``::

    DIR/config.json         {"hralign_format": "policy", "hralign_version": 1, "kind": a registered kind,
                             "config": model config, "dims": {...}, "encoder": {...}, "train": {...},
                             "data": {...}, "weights_sha256": ...}
    DIR/model.safetensors   the policy's state dict (action-head statistics and bins included)
    DIR/metrics.jsonl       one JSON object per logged step
    DIR/checkpoints/        resumable state (``--resume``)

Both files are written atomically; ``config.json`` last, so a directory with a config always has
its weights.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from hralign.atomic import atomic_path, write_text_atomic
from hralign.encoders import RandomInitWarning, build_from_spec, load_encoder
from hralign.encoders.checkpoint import load_safetensors_checked
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.metafile import read_meta_json
from hralign.policy.registry import get_policy_kind, make_policy

POLICY_FORMAT = "policy"
POLICY_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class EncoderSource:
    """Which encoder(s) produce the features: robot clips through the (adapted) encoder, human
    clips through the frozen base (HR-Align adapts the robot branch only)."""

    encoder: str = field(metadata={"help": "name, saved encoder dir or adapter dir"})
    weights: str | None = field(default=None, metadata={"help": "official checkpoint of a named encoder"})
    adapter: str | None = field(default=None, metadata={"help": "adapter dir applied to robot frames"})
    image_size: int | None = field(default=None, metadata={"help": "input side override"})
    trust_checkpoint: bool = field(default=False, metadata={"help": "allow full unpickling of `weights`"})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("encoder", "weights", "adapter"):
            v = d[key]
            if v is not None and ":" not in v and Path(v).exists():
                d[key] = str(Path(v).resolve())
        return d

    def robot_encoder(self) -> nn.Module:
        if self.adapter is not None:
            return load_encoder(self.adapter, image_size=self.image_size)
        return load_encoder(self.encoder, weights=self.weights, image_size=self.image_size,
                            trust_checkpoint=self.trust_checkpoint)

    def human_encoder(self, robot: nn.Module | None = None) -> nn.Module:
        """The frozen base: ``--encoder`` itself, or the base recorded in an adapter directory."""
        if self.adapter is None and _is_adapter_dir(self.encoder):
            return _adapter_base(self.encoder)
        image_size = self.image_size
        if image_size is None and robot is not None and self.adapter is not None:
            image_size = int(robot.image_size)  # the base at the adapter's input size
        return load_encoder(self.encoder, weights=self.weights, image_size=image_size,
                            trust_checkpoint=self.trust_checkpoint)


def _is_adapter_dir(path: str) -> bool:
    meta = Path(path) / "hralign.json"
    if ":" in path or not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("hralign_format") == "adapter"
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def _adapter_base(directory: str) -> nn.Module:
    from hralign.adapters import read_adapter_meta
    from hralign.adapters.io import BASE_FILE

    spec = dict(read_adapter_meta(directory)["encoder"])
    if spec.get("weights") == BASE_FILE:
        spec["weights"] = str(Path(directory) / BASE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return build_from_spec(spec)


def build_policy(kind: str, config: dict[str, Any], dims: dict[str, int], source: str = "config") -> nn.Module:
    """A fresh policy of the registered ``kind`` from its saved config dict and dims (:mod:`hralign.policy.registry`)."""
    if not isinstance(kind, str):
        raise HRAlignError(f"{source}: 'kind' should be a policy kind name but is {kind!r}")
    cfg = get_policy_kind(kind, source).config_class.from_dict(config, source)
    return make_policy(cfg, dims, source)


def policy_state(policy: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in policy.state_dict().items()}


def save_policy(policy: nn.Module, directory: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``config.json`` (atomically each) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / WEIGHTS_FILE, suffix=".safetensors") as tmp:
        save_file(policy_state(policy), str(tmp), metadata={"format": "pt"})
    full = {"hralign_format": POLICY_FORMAT, "hralign_version": POLICY_VERSION, "kind": policy.name,
            "config": policy.config.to_dict(), "dims": dict(policy.dims), **meta,
            "weights_sha256": sha256_file(d / WEIGHTS_FILE)}
    write_text_atomic(d / CONFIG_FILE, json.dumps(full, indent=2))
    return d


def read_policy_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a policy directory, checked for format and version."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise HRAlignError(f"--policy {directory}: not a directory (expected one written by `hralign policy train`)")
    return read_meta_json(path, (POLICY_FORMAT,), POLICY_VERSION, "`hralign policy train`")


def load_policy(directory: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(policy in eval mode, its config.json); weights checked against the recorded sha256."""
    meta = read_policy_meta(directory)
    where = Path(directory) / CONFIG_FILE
    policy = build_policy(meta.get("kind"), meta.get("config", {}), meta.get("dims", {}), str(where))
    wpath = Path(directory) / WEIGHTS_FILE
    if not wpath.is_file():
        raise HRAlignError(f"{wpath}: missing")
    if meta.get("weights_sha256") and sha256_file(wpath) != meta["weights_sha256"]:
        raise HRAlignError(f"{wpath}: sha256 differs from config.json's weights_sha256 (file replaced?)")
    load_safetensors_checked(policy, wpath, "config.json")
    policy.eval()
    return policy, meta


def check_feature_dim(meta: dict[str, Any], encoder: nn.Module, where: str) -> None:
    """A policy only reads features of the width it was trained on: one-line error otherwise."""
    want = int(meta.get("dims", {}).get("feature_dim", -1))
    got = int(getattr(encoder, "feature_dim", -1))
    if want != got:
        trained = meta.get("encoder", {}).get("name", "?")
        raise HRAlignError(f"{where}: policy was trained on {want}-d features ({trained}) but encoder "
                           f"{getattr(encoder, 'name', '?')} gives {got}-d features; pass the encoder it was trained with")


def recorded_source(meta: dict[str, Any], source: EncoderSource | None, where: str) -> EncoderSource:
    """``source`` if given, else the encoder recorded in a saved policy's ``meta`` (one line naming
    ``where`` when the policy recorded none), for the offline evaluations of every policy kind."""
    if source is not None:
        return source
    rec = meta.get("encoder", {}).get("source")
    if not isinstance(rec, dict) or "encoder" not in rec:
        raise HRAlignError(f"{where}: no recorded encoder; pass --encoder")
    return EncoderSource(**rec)
