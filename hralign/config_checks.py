"""The checks every config's ``__post_init__`` runs, written once so the rules and messages agree.

Each check raises :class:`~hralign.errors.HRAlignError` in PEFT's form: the field in backticks,
what was expected and the value passed (e.g. "`steps` should be an integer >= 1 but the value
passed is 0"). ``flag=True`` names the field as its option (``--batch-size``), for the configs
whose fields are exactly a command's options. No torch import: every package may use it.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Iterable

from hralign.errors import HRAlignError

# The one validation-fraction rule: a share held out, possibly none, never all.
FRACTION_RANGE = "[0, 1)"


def _name(name: str, flag: bool) -> str:
    return f"`--{name.replace('_', '-')}`" if flag else f"`{name}`"


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def check_int(value: Any, name: str, lo: int = 0, hi: int | None = None, flag: bool = False) -> int:
    """``value`` if it is an integer (not a bool) in ``lo..hi``, else the one-line error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo or (hi is not None and value > hi):
        want = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
        raise HRAlignError(f"{_name(name, flag)} should be {want} but the value passed is {value!r}")
    return value


def check_ints(obj: Any, names: Iterable[str], lo: int = 0, flag: bool = False) -> None:
    """:func:`check_int` on each attribute ``names`` of ``obj`` (a config in its ``__post_init__``)."""
    for name in names:
        check_int(getattr(obj, name), name, lo, flag=flag)


def check_number(value: Any, name: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, flag: bool = False) -> float:
    """``value`` if it is a number (not a bool) in the interval given (open ends with ``*_open``)."""
    ok = _is_number(value) and value == value  # NaN fails every range
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        if lo is not None and hi is not None:
            want = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            want = ("a positive number" if lo_open else "a non-negative number") if lo == 0 else \
                f"a number {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            want = f"a number {'<' if hi_open else '<='} {hi:g}"
        else:
            want = "a number"
        raise HRAlignError(f"{_name(name, flag)} should be {want} but the value passed is {value!r}")
    return value


def check_fraction(value: Any, name: str = "val_fraction", flag: bool = False) -> float:
    """A validation fraction: a number in [0, 1) (0 = nothing held out; 1 would leave nothing to train on)."""
    return check_number(value, name, 0.0, 1.0, hi_open=True, flag=flag)


def check_choice(value: Any, name: str, choices: Iterable[Any], flag: bool = False) -> Any:
    """``value`` if it is one of ``choices``, else an error listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise HRAlignError(f"{_name(name, flag)} should be one of {', '.join(map(str, choices))} "
                           f"but the value passed is {value!r}")
    return value


def from_dict(cls: type, data: Any, source: str = "config") -> Any:
    """``cls(**data)`` for a saved config: not an object, or a key ``cls`` does not know, is an error
    naming ``source`` (the file) and listing the known keys; the values are checked by ``cls``."""
    if not isinstance(data, dict):
        raise HRAlignError(f"{source}: {cls.__name__} should be a JSON object but is {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HRAlignError(f"{source}: unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")
    return cls(**data)
