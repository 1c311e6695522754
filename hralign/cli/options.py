"""Click options generated from a config dataclass: the one way from a config to the command line.

Each dataclass field becomes ``--field-name`` with the field's type, default and ``help``
metadata. One type mapping (:func:`field_kind`) serves both the options and ``--set KEY=VALUE``
overrides (:func:`parse_value`): ``bool`` -> ``--x/--no-x`` (``true``/``false`` after ``--set``),
``int``/``float`` -> click's numbers, tuples -> one comma-separated string (the form the configs
parse), the rest -> text. :func:`dataclass_options` records the configs it used on the command
function (:data:`CONFIGS_ATTR`), so a test can walk every command and compare options with fields.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import click

from hralign.errors import HRAlignError

# attribute of a command's callback: the ConfigOptions of each dataclass_options it was built with
CONFIGS_ATTR = "__hralign_configs__"


@dataclasses.dataclass(frozen=True)
class ConfigOptions:
    """What :func:`dataclass_options` added to a command: which config, which fields as which option."""

    cls: type
    dests: dict[str, str]  # field name -> option dest (the field's name unless renamed)
    default_none: bool | str
    help_prefix: str

_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}
_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def field_kind(annotation: Any) -> tuple[type, str]:
    """(python type, kind) of a field annotation such as ``int | None`` or ``tuple[str, ...] | str``.

    kind is ``"bool"`` (a switch), ``"tuple"`` (comma-separated text) or ``"scalar"``. String
    annotations (``from __future__ import annotations``) and real types are read alike.
    """
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    first = text.split("|")[0].strip()
    if first.startswith(("tuple", "list")):
        return str, "tuple"
    typ = _SCALARS.get(first, str)
    return typ, "bool" if typ is bool else "scalar"


def parse_value(cls: type, name: str, text: str, source: str = "--set") -> Any:
    """``text`` as the value of field ``name`` of ``cls``, by the same mapping as the options.

    Bad text is a one-line :class:`HRAlignError` naming ``source``, the key, the text and the type
    expected.
    """
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise HRAlignError(f"{source} {name}: not a field of {cls.__name__}")
    typ, kind = field_kind(f.type)
    if kind == "bool":
        word = text.strip().lower()
        if word not in ("true", "false", "1", "0", "yes", "no"):
            raise HRAlignError(f"{source} {name}={text!r}: expected true or false")
        return word in ("true", "1", "yes")
    if kind == "tuple" or typ is str:
        return text
    try:
        return _CLICK_TYPES[typ].convert(text, None, None)
    except click.BadParameter:
        raise HRAlignError(f"{source} {name}={text!r}: expected {'an integer' if typ is int else 'a number'}") from None


def _record(func: Callable, used: ConfigOptions) -> None:
    setattr(func, CONFIGS_ATTR, [used] + list(getattr(func, CONFIGS_ATTR, [])))


def dataclass_options(cls, exclude: tuple[str, ...] = (), required: tuple[str, ...] = (),
                      only: tuple[str, ...] | None = None, rename: dict[str, str] | None = None,
                      default_none: bool | str = False, help_prefix: str = "") -> Callable:
    """Decorator adding one click option per field of ``cls``.

    ``exclude`` skips fields, ``only`` keeps just those (in field order); ``rename`` maps a field to
    another option name where a command combines configs that share one (``bench metaworld``'s
    ``--collect-seed`` beside ``--seed``). Tuple defaults are shown and passed comma-separated, the
    form the configs parse. ``default_none``: every option defaults to None, meaning "the config's
    default" (shown in the help), for commands that build one of several configs from the options
    given; a string instead says what None means (``"the pairs file's"``). ``help_prefix`` goes
    before each help text (e.g. ``"[GR-1] "``).
    """
    rename = rename or {}

    def decorate(func: Callable) -> Callable:
        dests = {}
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude or (only is not None and f.name not in only):
                continue
            dest = rename.get(f.name, f.name)
            dests[f.name] = dest
            flag = "--" + dest.replace("_", "-")
            typ, kind = field_kind(f.type)
            default = None if f.default is dataclasses.MISSING else f.default
            if isinstance(default, (tuple, list)):
                default = ",".join(map(str, default))
            help_text = help_prefix + f.metadata.get("help", "")
            if default_none:
                shown = default_none if isinstance(default_none, str) else default if default not in ("", None) else "none"
                help_text += f" [default {shown}]"
                default, show = None, False
            else:
                show = default not in (None, "")
            if kind == "bool":
                func = click.option(f"{flag}/--no-{flag[2:]}", dest, default=default, show_default=show,
                                    help=help_text)(func)
            else:
                is_required = f.name in required
                func = click.option(flag, dest, type=_CLICK_TYPES[typ], default=None if is_required else default,
                                    required=is_required, show_default=show and not is_required,
                                    help=help_text)(func)
        _record(func, ConfigOptions(cls, dict(reversed(dests.items())), default_none, help_prefix))
        return func

    return decorate


def command_configs(command: click.Command) -> list[ConfigOptions]:
    """The configs whose options ``command`` was built from (top decorator first)."""
    return list(getattr(command.callback, CONFIGS_ATTR, []))


def renamed_option(old: str, new: str, is_flag: bool = False, note: str = "") -> Callable:
    """A hidden ``old`` option that refuses its use, naming ``new``: a renamed option's old spelling
    fails in one line (exit 2) instead of as "no such option" or, worse, with another meaning."""

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value not in (None, False):
            again = "" if is_flag else f"; pass {new} {value}"
            raise HRAlignError(f"`{old}` was renamed: use `{new}`{note}{again}")

    return click.option(old, "_renamed_" + old.lstrip("-").replace("-", "_"), is_flag=is_flag, default=None,
                        hidden=True, expose_value=False, callback=refuse)


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
