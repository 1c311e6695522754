"""The objective registry: one name -> one :class:`~hralign.pretrain.objectives.base.Objective` class.

A plain dict filled by one :func:`register_objective` call per objective (PEFT's
``register_peft_method``); the trainer, the config and the CLI look objectives up here and never
branch on a name.
"""

from __future__ import annotations

import dataclasses

from hralign.errors import HRAlignError

# name -> Objective subclass (its ``config_class`` is the objective's config dataclass)
OBJECTIVES: dict[str, type] = {}


def register_objective(name: str, objective: type) -> None:
    """Register ``objective`` (an Objective subclass with a ``config_class``) under ``name``.

    A duplicate name is an error, and so is a config field that another objective's config has
    with a different default: every field is one command-line option shared by the objectives
    that have it (``r3m+vicreg`` takes R3M's fields as they are).
    """
    if name in OBJECTIVES:
        raise HRAlignError(f"objective {name!r} is already registered")
    config_class = getattr(objective, "config_class", None)
    if config_class is None:
        raise HRAlignError(f"objective {name!r}: {objective.__name__} has no `config_class`")
    new = _field_defaults(config_class)
    for other, cls in OBJECTIVES.items():
        for key, default in _field_defaults(cls.config_class).items():
            if key in new and new[key] != default:
                raise HRAlignError(f"objective {name!r}: field `{key}` (default {new[key]!r}) is also a field of "
                                   f"{other!r} with default {default!r}; give it another name")
    OBJECTIVES[name] = objective


def objective_class(name: str) -> type:
    """The Objective class registered as ``name``; an unknown name lists the known ones."""
    if name not in OBJECTIVES:
        raise HRAlignError(f"`--objective` should be one of {', '.join(OBJECTIVES)} but the value passed is {name!r}")
    return OBJECTIVES[name]


def _field_defaults(config_class: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(config_class)}
