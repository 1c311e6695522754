"""Options of every registered policy kind, for ``hralign policy train`` and ``hralign sim eval``.

One option per field of each kind's config (and training config), built by
:func:`hralign.cli.options.dataclass_options` with default None (= the chosen kind's default), each
name once. After parsing, :func:`kind_configs` keeps the options the user gave, refuses those the
chosen kind does not have (naming the kinds that do) and builds the kind's configs. Commands are
built when invoked (:class:`KindGroup`), after the plug-in kinds are loaded, so a plug-in's options
appear like the built-in ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click

from hralign.cli.options import dataclass_options
from hralign.errors import HRAlignError
from hralign.policy import POLICY_KINDS, PolicyKind, load_plugins, train_config_class
from hralign.policy.config import PolicyTrainConfig


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def own_train_fields(kind: PolicyKind) -> set[str]:
    """Fields of the kind's training config beyond the shared ones (GR-1: ``pretrain_steps``)."""
    return set(_names(train_config_class(kind))) - set(_names(PolicyTrainConfig))


def kind_options(train: str = "all", skip: tuple[str, ...] = ()) -> Callable:
    """One option per field of every registered kind's config, default None; ``train``: "all" adds every
    training-config field, "own" only the fields a kind adds to the shared ones, "none" none."""
    classes: list[tuple[type, set[str] | None]] = []
    for kind in POLICY_KINDS.values():
        classes.append((kind.config_class, None))
        if train == "all":
            classes.append((train_config_class(kind), None))
        elif train == "own":
            classes.append((train_config_class(kind), own_train_fields(kind)))

    def decorate(func: Callable) -> Callable:
        seen = set(skip)
        plan = []
        for cls, keep in classes:
            only = tuple(n for n in _names(cls) if n not in seen and (keep is None or n in keep))
            seen.update(only)
            plan.append((cls, only))
        for cls, only in reversed(plan):  # decorators apply bottom-up: keep the kinds' order in --help
            if only:
                func = dataclass_options(cls, only=only, default_none=True)(func)
        return func

    return decorate


def _flags(names: list[str]) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


def kind_configs(kind: PolicyKind, given: dict[str, Any], train: str = "all") -> tuple[Any, dict[str, Any]]:
    """(the kind's config, its training-config keyword arguments) from the options given (not None);
    an option of another kind is a one-line error naming the kinds it applies to."""
    model = set(_names(kind.config_class))
    trainable = set(_names(train_config_class(kind))) if train == "all" else \
        own_train_fields(kind) if train == "own" else set()
    chosen = {k: v for k, v in given.items() if v is not None}
    foreign = sorted(set(chosen) - model - trainable)
    if foreign:
        owners = [k.name for k in POLICY_KINDS.values()
                  if set(foreign) <= set(_names(k.config_class)) | set(_names(train_config_class(k)))]
        where = " or ".join("--kind " + o for o in owners) if owners else "no policy kind"
        raise HRAlignError(f"{_flags(foreign)} only apply to {where}; --kind {kind.name} has no such option")
    config = kind.config_class(**{**kind_defaults(kind, train), **{k: v for k, v in chosen.items() if k in model}})
    return config, {k: v for k, v in chosen.items() if k in trainable}


def kind_defaults(kind: PolicyKind, train: str) -> dict[str, Any]:
    """Config fields a command sets unless given: ``sim eval``'s closed-loop defaults (``train`` "own")."""
    return dict(kind.closed_loop_defaults) if train == "own" else {}


class KindGroup(click.Group):
    """A group whose commands named in ``builders`` are built when invoked, after the plug-in kinds load."""

    builders: dict[str, Callable[[], click.Command]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.builders))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.builders:
            load_plugins()
            return self.builders[name]()
        return super().get_command(ctx, name)
