"""Saving and loading adapters: the directory a PEFT user recognises, plus ``hralign.json``.

``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's layout for PEFT methods, so
``peft.PeftModel.from_pretrained(base_encoder, dir)`` works) and ``hralign.json`` with the
method, its options and the base encoder's spec (weights path + sha256). When the base has no
weights file (random init) its state checksum is recorded; when its weights were changed in
memory (``set_trainable``), they are written beside the adapter as ``base_encoder.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hralign.adapters.model import AdaptedEncoder, attach_adapter, backbone_parameters, trainable_parameters
from hralign.adapters.peft_methods import ADAPTER_PREFIXES, peft_state, set_peft_state
from hralign.atomic import atomic_dir
from hralign.encoders import RandomInitWarning, build_from_spec, read_meta, register_directory_format
from hralign.encoders.api import FORMAT_VERSION, META_FILE, state_for_safetensors
from hralign.encoders.base import Encoder
from hralign.encoders.checkpoint import describe_mismatch
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
BASE_FILE = "base_encoder.safetensors"


def _checksum(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict (names, dtypes, shapes, bytes): identifies random-init weights."""
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        t = v.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{k}|{t.dtype}|{list(v.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def adapter_state(model: AdaptedEncoder) -> dict[str, torch.Tensor]:
    """The adapter's weights in the saved layout."""
    if model.peft_config is not None:
        state = peft_state(model.base)
    else:
        state = model.adapters.state_dict()
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def save_adapter(model: AdaptedEncoder, directory: str | os.PathLike) -> Path:
    """Write the adapter directory (atomically); ``hralign.load_encoder(directory)`` rebuilds the model."""
    if not isinstance(model, AdaptedEncoder):
        raise HRAlignError(f"save_adapter: expected an encoder from attach_adapter, got {type(model).__name__}")
    target = Path(directory)
    base = model.base
    spec = base.spec
    with atomic_dir(target) as tmp:
        save_file(adapter_state(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if model.peft_config is not None:
            model.peft_config.save_pretrained(str(tmp))  # PEFT's own adapter_config.json
        else:
            (tmp / CONFIG_FILE).write_text(json.dumps(model.adapter_config, indent=2), encoding="utf-8")
        base_checksum = None
        if base._weights_modified:
            state = {k: v for k, v in state_for_safetensors(base).items() if not _is_peft_key(k)}
            save_file(_unwrap_peft_keys(state), str(tmp / BASE_FILE), metadata={"format": "pt"})
            spec.update({"weights": BASE_FILE, "sha256": sha256_file(tmp / BASE_FILE)})
        elif spec.get("weights") is None:
            base_checksum = getattr(model, "base_checksum", None) or _base_checksum(base)
        meta = {
            "hralign_format": "adapter",
            "hralign_version": FORMAT_VERSION,
            "method": model.adapter_method,
            "placement": model.placement,
            "options": _jsonable(model.adapter_options),
            "encoder": spec,
            "base_state_sha256": base_checksum,
            "trainable_parameters": trainable_parameters(model) or _count_adapter(model),
            "backbone_parameters": backbone_parameters(model),
            "adapter_sha256": sha256_file(tmp / WEIGHTS_FILE),
        }
        meta["checksum"] = _checksum(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return target


def _count_adapter(model: AdaptedEncoder) -> int:
    return sum(v.numel() for v in adapter_state(model).values())


def _is_peft_key(key: str) -> bool:
    return any(part.startswith(ADAPTER_PREFIXES) for part in key.split("."))


def _unwrap_peft_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Backbone keys as the plain encoder names them (PEFT wraps targeted layers in ``base_layer``)."""
    return {k.replace(".base_layer.", "."): v for k, v in state.items()}


def _base_checksum(base: Encoder) -> str:
    return state_checksum(_unwrap_peft_keys({k: v for k, v in base.state_dict().items() if not _is_peft_key(k)}))


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(options)
    except TypeError as e:
        raise HRAlignError(f"save_adapter: adapter options must be JSON-able ({e})") from e
    return options


def read_adapter_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """``hralign.json`` of an adapter directory, checked: method, options, base spec under ``"encoder"``."""
    path = Path(directory)
    meta = read_meta(path)
    where = path / META_FILE
    if meta.get("hralign_format") != "adapter":
        raise HRAlignError(f"{where}: hralign_format {meta.get('hralign_format')!r}, expected 'adapter'")
    if meta.get("checksum") != _checksum(meta):
        raise HRAlignError(
            f"{where}: content does not match its checksum (edited by hand?); re-save it with hralign.save_adapter"
        )
    for key, kind in (("method", str), ("options", dict), ("encoder", dict)):
        if not isinstance(meta.get(key), kind):
            raise HRAlignError(f"{where}: '{key}' missing or not a {kind.__name__}")
    return meta


def _read_adapter_config(path: Path) -> dict[str, Any]:
    """``adapter_config.json`` parsed: a JSON object, else one line naming the file."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise HRAlignError(f"{path}: not valid JSON ({e}); expected the adapter's config object as save_adapter "
                           "writes it") from e
    if not isinstance(config, dict):
        raise HRAlignError(f"{path}: holds a JSON {type(config).__name__}, expected the adapter's config object")
    return config


def _canon(value: Any) -> str:
    """A JSON value compared order-free in its lists (PEFT writes sets, e.g. target_modules, as lists)."""
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, set, frozenset)):
            return sorted((norm(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        return v

    return json.dumps(norm(json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, (set, frozenset))
                                                  else str(v)))), sort_keys=True)


def _check_adapter_config(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    """PEFT and users read ``adapter_config.json``, hralign rebuilds from ``hralign.json``: they must agree.

    Only keys the file has are compared, and not ``peft_version``: a file written by another PEFT
    version lacks the options that version did not have, and PEFT fills their defaults.
    """
    for key, want in expected.items():
        if key in found and key != "peft_version" and _canon(found[key]) != _canon(want):
            raise HRAlignError(f"{path}: {key!r} is {found.get(key)!r} but hralign.json's adapter has {want!r} "
                               "(edited by hand?); PEFT reads this file and hralign hralign.json, so they must agree: "
                               "re-save the adapter with hralign.save_adapter")


def _load_adapter_dir(
    directory: Path, meta: dict[str, Any], image_size: int | None = None, trust_checkpoint: bool = False
) -> AdaptedEncoder:
    meta = read_adapter_meta(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise HRAlignError(f"{directory}: {name} is missing; expected a directory written by save_adapter")
    config = _read_adapter_config(directory / CONFIG_FILE)
    if sha256_file(directory / WEIGHTS_FILE) != meta.get("adapter_sha256"):
        raise HRAlignError(f"{directory / WEIGHTS_FILE}: sha256 differs from hralign.json's adapter_sha256 (file replaced?)")
    spec = dict(meta["encoder"])
    if image_size is not None and image_size != spec.get("image_size"):
        raise HRAlignError(
            f"{directory}: adapter was trained at image_size {spec.get('image_size')}, got image_size={image_size}"
        )
    if spec.get("weights") == BASE_FILE:
        spec["weights"] = str(directory / BASE_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        base = build_from_spec(spec)
    expected = meta.get("base_state_sha256")
    if expected and state_checksum(base.state_dict()) != expected:
        raise HRAlignError(
            f"{directory}: the rebuilt random-init base encoder {spec.get('name')} differs from the one the adapter was "
            "trained on (another torch version?); save the base with save_encoder and re-attach"
        )
    model = attach_adapter(base, meta["method"], **meta["options"])
    _check_adapter_config(directory / CONFIG_FILE, config, model.adapter_config)
    state = load_file(str(directory / WEIGHTS_FILE))
    expected_state = adapter_state(model)
    problem = describe_mismatch(expected_state, state)
    if problem:
        raise HRAlignError(f"{directory / WEIGHTS_FILE}: does not fit a {meta['method']} adapter on {spec['name']} ({problem})")
    if model.peft_config is not None:
        set_peft_state(model.base, state)
    else:
        model.adapters.load_state_dict(state, strict=True)
    model._spec = {"name": str(directory.resolve()), "image_size": model.image_size, "weights": None, "sha256": None}
    return model


register_directory_format("adapter", _load_adapter_dir)
