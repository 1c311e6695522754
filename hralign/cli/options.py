"""Click options generated from a config dataclass, so the CLI and the library never disagree.

Each dataclass field becomes ``--field-name`` with the field's type, default and ``help``
metadata; booleans become ``--x/--no-x`` switches.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Callable

import click


def _click_type(annotation) -> tuple[type, bool]:
    """(python type, is_bool) of a field annotation such as ``int | None`` (string annotations too)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if text.split("|")[0].strip() == name:
            return typ, typ is bool
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return (args[0], args[0] is bool) if args else (str, False)


def dataclass_options(cls, exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> Callable:
    """Decorator adding one click option per field of ``cls`` (fields in ``exclude`` skipped)."""

    def decorate(func: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude:
                continue
            flag = "--" + f.name.replace("_", "-")
            typ, is_bool = _click_type(f.type)
            help_text = f.metadata.get("help", "")
            if is_bool:
                func = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=f.default, show_default=True,
                                    help=help_text)(func)
            else:
                default = None if f.default is dataclasses.MISSING else f.default
                is_required = f.name in required
                func = click.option(flag, f.name, type=typ, default=None if is_required else default,
                                    required=is_required, show_default=default not in (None, ""),
                                    help=help_text)(func)
        return func

    return decorate
