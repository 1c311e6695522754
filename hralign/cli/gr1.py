"""GR-1 options for ``hralign policy train --kind gr1`` and ``hralign sim eval --policy gr1``.

Options come from :class:`~hralign.policy.gr1.GR1Config` / :class:`~hralign.policy.gr1.GR1TrainConfig`
(help text included), so the CLI and the library never disagree. Fields whose names the host command
already has (``--proprio``, ``--steps``, ``--lr``, ...) reuse that option; the rest are added here with
default None (= the dataclass default).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click
from click.core import ParameterSource

from hralign.errors import HRAlignError
from hralign.policy.gr1.config import GR1Config, GR1TrainConfig

# GR-1's own options (no other policy has them); every other GR1Config/GR1TrainConfig field shares its
# name with an option `policy train` already has
GR1_ONLY = ("history", "chunk", "future_delta", "dim", "layers", "heads", "dropout", "ensemble_coeff", "pretrain_steps")


def _field(name: str) -> dataclasses.Field:
    for cls in (GR1Config, GR1TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f
    raise KeyError(name)


def gr1_options(func: Callable) -> Callable:
    """Add ``--history``, ``--chunk``, ``--future-delta``, ... (GR-1 only; default None = the config's)."""
    for name in reversed(GR1_ONLY):
        f = _field(name)
        typ = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        func = click.option("--" + name.replace("_", "-"), name, type=typ, default=None,
                            help=f"[GR-1] {f.metadata['help']} [default {f.default}]")(func)
    return func


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user passed option ``name`` (not its default)."""
    src = ctx.get_parameter_source(name)
    return src is not None and src not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def split_gr1(options: dict[str, Any]) -> dict[str, Any]:
    """Pop the GR-1-only options out of ``options``; returns those given (not None)."""
    return {k: v for k in GR1_ONLY if (v := options.pop(k, None)) is not None}


def gr1_configs(ctx: click.Context, options: dict[str, Any],
                also: frozenset[str] = frozenset()) -> tuple[GR1Config, GR1TrainConfig]:
    """(model, training) configs from the GR-1 options plus the host command's options the user gave
    and those named in ``also`` (``policy train --resume``: the options refilled from the run's run.json).
    The host's other options keep GR-1's defaults, not the host's."""
    model_names = {f.name for f in dataclasses.fields(GR1Config)}
    train_names = {f.name for f in dataclasses.fields(GR1TrainConfig)}
    chosen = {k: v for k, v in options.items()
              if v is not None and (k in GR1_ONLY or given(ctx, k) or k in also)}
    unknown = sorted(set(chosen) - model_names - train_names)
    if unknown:
        raise HRAlignError(f"{', '.join('--' + n.replace('_', '-') for n in unknown)} do not apply to --kind gr1")
    return (GR1Config(**{k: v for k, v in chosen.items() if k in model_names}),
            GR1TrainConfig(**{k: v for k, v in chosen.items() if k in train_names}))
