"""``load_encoder`` / ``save_encoder`` / ``build_from_spec``: the public way in and out of encoders.

Loading never touches the network. No weights -> deterministic random init (seed 0) and one
warning; a missing file -> an error naming where such files usually live.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hralign.atomic import atomic_dir
from hralign.encoders.base import Encoder
from hralign.encoders.checkpoint import check_weights_file, load_state_checked, torch_load
from hralign.encoders.registry import ENCODERS, directory_loader, known_names, register_directory_format, resolve_prefix
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.metafile import read_meta_json

META_FILE = "hralign.json"
ENCODER_WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1
INIT_SEED = 0


class RandomInitWarning(UserWarning):
    """An encoder was built without weights (random init): fine for tests and the demo only."""


def _build(name: str, image_size: int | None) -> tuple[Encoder, str | None]:
    """Random-init encoder for ``name`` (seeded, so rebuilding a spec gives the same weights) + weights hint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        if name in ENCODERS:
            entry = ENCODERS[name]
            return entry.factory(image_size or entry.image_size), entry.weights_hint
        pref = resolve_prefix(name)
        if pref is not None:
            rest, factory = pref
            return factory(rest, image_size), None
    raise HRAlignError(f"unknown encoder {name!r}; known: {', '.join(known_names())}")


def load_encoder(
    name_or_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    image_size: int | None = None,
    trust_checkpoint: bool = False,
    expected_sha256: str | None = None,
) -> Encoder:
    """Load a frozen encoder (eval mode, no gradients, BatchNorm statistics fixed).

    Parameters
    ----------
    name_or_dir : str or path
        A registered name (``r3m-resnet50``, ``d4r-vit-b16``, ``timm:resnet18``, ``hf:DIR``,
        ``lam:DIR``) or a directory written by ``save_encoder`` / ``save_adapter``.
    weights : path, optional
        Official checkpoint (R3M ``model.pt``, D4R ``.pth``, timm state dict) or an hralign
        ``.safetensors``. None: random init and one :class:`RandomInitWarning`.
    image_size : int, optional
        Input side (default: the encoder's, e.g. 224 for R3M).
    trust_checkpoint : bool
        Allow full unpickling (``torch.load(weights_only=False)``); only for files you trust.
    expected_sha256 : str, optional
        Refuse a weights file whose checksum differs (used when rebuilding from a spec).
    """
    name = os.fspath(name_or_dir)
    path = Path(name).expanduser()
    if ":" not in name and path.is_dir():
        if weights is not None:
            raise HRAlignError(f"{path}: a saved encoder/adapter directory carries its own weights; drop `weights`")
        meta = read_meta(path)
        loader = directory_loader(str(meta.get("hralign_format")), path / META_FILE)
        enc = loader(path, meta, image_size=image_size, trust_checkpoint=trust_checkpoint)
        return enc.freeze()

    enc, hint = _build(name, image_size)
    if weights is None:
        if not getattr(enc, "pretrained_source", None):
            warnings.warn(
                f"encoder {name}: no weights given, randomly initialised (seed {INIT_SEED}); nothing is downloaded",
                RandomInitWarning,
                stacklevel=2,
            )
        enc.freeze()
        return enc
    wpath = check_weights_file(weights, hint)
    digest = sha256_file(wpath)
    if expected_sha256 and digest != expected_sha256:
        raise HRAlignError(
            f"weights file {wpath}: sha256 {digest[:12]}... differs from the recorded {expected_sha256[:12]}...; "
            "the file changed since the encoder/adapter was saved"
        )
    if wpath.suffix == ".safetensors":
        try:
            state = load_file(str(wpath))
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise HRAlignError(f"{wpath}: not a readable safetensors file ({e})") from e
        if set(state) == set(enc.state_dict()):  # hralign's own layout (save_encoder)
            load_state_checked(enc, state, str(wpath), enc.name)
        else:  # an official checkpoint stored as safetensors (timm, transformers)
            load_state_checked(enc.backbone(), enc.convert_checkpoint(state, str(wpath)), str(wpath), enc.name)
    else:
        obj = torch_load(wpath, trust_checkpoint=trust_checkpoint)
        state = enc.convert_checkpoint(obj, str(wpath))
        load_state_checked(enc.backbone(), state, str(wpath), enc.name)
    enc._spec.update({"weights": str(wpath.resolve()), "sha256": digest})
    if trust_checkpoint:
        enc._spec["trust_checkpoint"] = True
    enc.freeze()
    return enc


def build_from_spec(spec: dict[str, Any]) -> Encoder:
    """Rebuild a frozen encoder from ``Encoder.spec`` (name, image size, weights path + sha256)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise HRAlignError(f"encoder spec: expected a dict with a 'name', found {spec!r:.120}")
    if spec.get("adapter"):
        raise HRAlignError(
            f"encoder spec of {spec['name']} carries an unsaved {spec['adapter']} adapter; "
            "save it with hralign.save_adapter(model, dir) and rebuild with load_encoder(dir)"
        )
    with warnings.catch_warnings():
        if spec.get("weights") is None:
            warnings.simplefilter("ignore", RandomInitWarning)  # recorded as random init: expected
        return load_encoder(
            spec["name"],
            weights=spec.get("weights"),
            image_size=spec.get("image_size"),
            trust_checkpoint=bool(spec.get("trust_checkpoint", False)),
            expected_sha256=spec.get("sha256"),
        )


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``hralign.json`` of a saved encoder/adapter directory, checked for shape."""
    return read_meta_json(Path(directory) / META_FILE, None, FORMAT_VERSION, "hralign save_encoder/save_adapter")


def state_for_safetensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict safetensors accepts (contiguous CPU tensors, no shared storage)."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def save_encoder(encoder: Encoder, directory: str | os.PathLike) -> Path:
    """Write ``hralign.json`` + ``model.safetensors``; ``load_encoder(directory)`` rebuilds it frozen.

    Used for encoders whose weights changed (pretraining, full fine-tune). Adapted encoders
    are saved with :func:`hralign.adapters.save_adapter` instead.
    """
    if not isinstance(encoder, Encoder):
        raise HRAlignError(f"save_encoder: expected an hralign Encoder, got {type(encoder).__name__}")
    if getattr(encoder, "adapter_method", None):
        raise HRAlignError("save_encoder: this encoder has an adapter; use hralign.save_adapter(model, dir)")
    target = Path(directory)
    with atomic_dir(target) as tmp:
        save_file(state_for_safetensors(encoder), str(tmp / ENCODER_WEIGHTS), metadata={"format": "pt"})
        spec = encoder.spec
        spec.update({"weights": None, "sha256": None})
        meta = {
            "hralign_format": "encoder",
            "hralign_version": FORMAT_VERSION,
            "spec": spec,
            "sha256": sha256_file(tmp / ENCODER_WEIGHTS),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return target


def _load_encoder_dir(directory: Path, meta: dict[str, Any], image_size: int | None = None, trust_checkpoint: bool = False) -> Encoder:
    spec = meta.get("spec")
    if not isinstance(spec, dict) or "name" not in spec:
        raise HRAlignError(f"{directory / META_FILE}: 'spec' with an encoder 'name' is missing")
    if image_size is not None and image_size != spec.get("image_size"):
        spec = {**spec, "image_size": image_size}
    return load_encoder(
        spec["name"],
        weights=directory / ENCODER_WEIGHTS,
        image_size=spec.get("image_size"),
        expected_sha256=meta.get("sha256"),
    )


register_directory_format("encoder", _load_encoder_dir)
