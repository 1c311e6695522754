"""Encoder registry: one name -> one constructor (as timm's ``_registry.py``); weights resolved separately.

Plain dicts filled by one ``register_*`` call per entry. Prefix entries (``timm:``, ``hf:``,
``lam:``) take the rest of the name as their argument. Packages further down the import flow
(``hralign.lam``, ``hralign.adapters``) plug in by name, like entry points: the dicts below
map a prefix / directory format to the module whose import registers it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hralign.errors import HRAlignError


@dataclass
class EncoderEntry:
    """How to build one named encoder (random init) and what it is."""

    factory: Callable[[int], Any] = field(metadata={"help": "image_size -> randomly initialised Encoder"})
    feature_dim: int | None = field(default=None, metadata={"help": "D of the output features"})
    image_size: int = field(default=224, metadata={"help": "default input side"})
    weights_hint: str | None = field(default=None, metadata={"help": "where users of this model keep its weights"})
    description: str = field(default="", metadata={"help": "one line for `hralign encoders list`"})

    def __post_init__(self) -> None:
        if not callable(self.factory):
            raise HRAlignError(f"`factory` should be callable but the value passed is {self.factory!r}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise HRAlignError(f"`image_size` should be an integer >= 8 but the value passed is {self.image_size!r}")


# name -> entry
ENCODERS: dict[str, EncoderEntry] = {}
# "timm:" -> factory(rest_of_name, image_size or None) -> Encoder
ENCODER_PREFIXES: dict[str, Callable[[str, int | None], Any]] = {}
# hralign.json "hralign_format" -> loader(directory, meta, image_size, trust_checkpoint) -> Encoder
DIRECTORY_FORMATS: dict[str, Callable[..., Any]] = {}

# Plug-ins registered by packages later in the import flow; imported on first use by name.
_PREFIX_PLUGINS = {"lam:": "hralign.lam"}
_FORMAT_PLUGINS = {"adapter": "hralign.adapters"}


def register_encoder(name: str, factory: Callable[[int], Any] | EncoderEntry, **info: Any) -> None:
    """Register ``name``; ``factory(image_size) -> Encoder`` (random init). Duplicates are an error."""
    if name in ENCODERS:
        raise HRAlignError(f"encoder {name!r} is already registered")
    if ":" in name:
        raise HRAlignError(f"encoder name {name!r} must not contain ':' (reserved for prefixes such as 'timm:')")
    ENCODERS[name] = factory if isinstance(factory, EncoderEntry) else EncoderEntry(factory=factory, **info)


def register_encoder_prefix(prefix: str, factory: Callable[[str, int | None], Any]) -> None:
    """Register a prefix such as ``"lam:"``: ``factory(rest, image_size) -> Encoder``."""
    if not prefix.endswith(":"):
        raise HRAlignError(f"encoder prefix {prefix!r} must end with ':'")
    if prefix in ENCODER_PREFIXES:
        raise HRAlignError(f"encoder prefix {prefix!r} is already registered")
    ENCODER_PREFIXES[prefix] = factory


def register_directory_format(fmt: str, loader: Callable[..., Any]) -> None:
    """Register a loader for directories whose ``hralign.json`` says ``"hralign_format": fmt``."""
    if fmt in DIRECTORY_FORMATS:
        raise HRAlignError(f"directory format {fmt!r} is already registered")
    DIRECTORY_FORMATS[fmt] = loader


def known_names() -> list[str]:
    """Registered names and prefixes, for error messages and ``hralign encoders list``."""
    prefixes = sorted(set(ENCODER_PREFIXES) | set(_PREFIX_PLUGINS))
    return sorted(ENCODERS) + [f"{p}<...>" for p in prefixes]


def resolve_prefix(name: str) -> tuple[str, Callable[[str, int | None], Any]] | None:
    """(rest, factory) when ``name`` starts with a registered or plug-in prefix, else None."""
    for prefix, module in _PREFIX_PLUGINS.items():
        if name.startswith(prefix) and prefix not in ENCODER_PREFIXES:
            _import_plugin(module, f"encoder prefix {prefix!r}")
    for prefix, factory in ENCODER_PREFIXES.items():
        if name.startswith(prefix):
            return name[len(prefix):], factory
    return None


def directory_loader(fmt: str, where: Path) -> Callable[..., Any]:
    if fmt not in DIRECTORY_FORMATS and fmt in _FORMAT_PLUGINS:
        _import_plugin(_FORMAT_PLUGINS[fmt], f"directory format {fmt!r}")
    if fmt not in DIRECTORY_FORMATS:
        raise HRAlignError(
            f"{where}: hralign_format {fmt!r} is unknown; expected one of {', '.join(sorted(set(DIRECTORY_FORMATS) | set(_FORMAT_PLUGINS)))}"
        )
    return DIRECTORY_FORMATS[fmt]


def _import_plugin(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise HRAlignError(f"{what} needs {module}, which cannot be imported ({e})") from e
