"""Frozen image encoders behind one contract (docs/design.md, "Encoder"), one registry, official checkpoint readers.

>>> enc = load_encoder("r3m-resnet18", image_size=64)   # random init + one warning
>>> enc(images_uint8).shape                              # (B, 512)
"""

from __future__ import annotations

from hralign.encoders import builtin as _builtin  # noqa: F401  (registers the built-in names)
from hralign.encoders.api import (
    RandomInitWarning,
    build_from_spec,
    load_encoder,
    read_meta,
    save_encoder,
)
from hralign.encoders.base import Encoder
from hralign.encoders.registry import (
    ENCODERS,
    known_names,
    register_directory_format,
    register_encoder,
    register_encoder_prefix,
)

__all__ = [
    "ENCODERS",
    "Encoder",
    "RandomInitWarning",
    "build_from_spec",
    "known_names",
    "load_encoder",
    "read_meta",
    "register_directory_format",
    "register_encoder",
    "register_encoder_prefix",
    "save_encoder",
]
