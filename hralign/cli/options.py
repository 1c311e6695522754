"""Click options generated from a config dataclass, so the CLI and the library never disagree.

Each dataclass field becomes ``--field-name`` with the field's type, default and ``help``
metadata; booleans become ``--x/--no-x`` switches.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
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


def dataclass_options(cls, exclude: tuple[str, ...] = (), required: tuple[str, ...] = (),
                      only: tuple[str, ...] | None = None, rename: dict[str, str] | None = None,
                      none_default: bool = False) -> Callable:
    """Decorator adding one click option per field of ``cls``.

    ``exclude`` skips fields, ``only`` keeps just those (in field order); ``rename`` maps a field to
    another option name where a command combines configs that share one (``bench metaworld``'s
    ``--collect-seed`` beside ``--seed``). Tuple defaults are shown and passed comma-separated, the
    form the configs parse. ``none_default``: every option defaults to None, meaning "the config's
    default", for a command that builds one of several configs from the options the user gave.
    """
    rename = rename or {}

    def decorate(func: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude or (only is not None and f.name not in only):
                continue
            dest = rename.get(f.name, f.name)
            flag = "--" + dest.replace("_", "-")
            typ, is_bool = _click_type(f.type)
            help_text = f.metadata.get("help", "")
            if none_default:
                func = click.option(f"{flag}/--no-{flag[2:]}" if is_bool else flag, dest, default=None,
                                    type=None if is_bool else typ, help=help_text)(func)
            elif is_bool:
                func = click.option(f"{flag}/--no-{flag[2:]}", dest, default=f.default, show_default=True,
                                    help=help_text)(func)
            else:
                default = None if f.default is dataclasses.MISSING else f.default
                if isinstance(default, (tuple, list)):
                    typ, default = str, ",".join(map(str, default))
                is_required = f.name in required
                func = click.option(flag, dest, type=typ, default=None if is_required else default,
                                    required=is_required, show_default=default not in (None, ""),
                                    help=help_text)(func)
        return func

    return decorate


def config_kwargs(cls, options: dict, rename: dict[str, str] | None = None) -> dict:
    """The keyword arguments of ``cls`` among a command's parsed ``options`` (renamed options mapped back)."""
    rename = rename or {}
    return {f.name: options[rename.get(f.name, f.name)] for f in dataclasses.fields(cls)
            if rename.get(f.name, f.name) in options}


def _flat(config: dict) -> dict:
    """{"train": {...}, "model": {...}} -> one level (field names do not repeat across the parts)."""
    out: dict = {}
    for k, v in config.items():
        out.update(_flat(v) if isinstance(v, dict) else {k: v})
    return out


def saved_options(options: dict) -> dict:
    """With ``--resume``: the options the run in ``options["out"]`` was started with (its run.json's
    config, one level); ``{}`` without ``--resume`` or when there is no run to resume (the training
    layer then says so, in one line)."""
    if not options.get("resume"):
        return {}
    # imported here: hralign.train loads torch and accelerate, which `--help` should not pay for
    from hralign.train.rundir import RUN_FILE, read_run

    if not (Path(options["out"]) / RUN_FILE).is_file():
        return {}
    saved = _flat(read_run(options["out"])["config"])
    return {k: v for k, v in saved.items() if k not in ("out", "resume", "overwrite")}


def resume_options(ctx: click.Context, options: dict) -> dict:
    """With ``--resume``, options not given on the command line take the value the run in ``--out``
    was started with, so ``--resume --steps N`` suffices; options given are kept (and the training
    layer refuses those that differ and may not change). Without ``--resume``: ``options`` as is.
    """
    saved = saved_options(options)
    return {k: saved[k] if k in saved and ctx.get_parameter_source(k) != click.core.ParameterSource.COMMANDLINE
            else v for k, v in options.items()}
