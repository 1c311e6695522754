"""The policy registry: one :class:`PolicyKind` per kind, registered under its name, and ``make_policy``.

LeRobot keeps every policy behind one registered config class (``PreTrainedConfig.register_subclass``)
and one ``make_policy(cfg, ...)``; hralign does the same with a plain dict. A kind is its config
dataclass, its policy class and the hooks that train and evaluate it; ``hralign policy train``,
``policy eval``, ``sim eval`` and the benchmarks look a kind up here and never branch on its name.

The interface every policy class implements (:class:`hralign.policy.BCPolicy` is the smallest one):

* ``name`` (the kind), ``config`` (its config dataclass, with ``to_dict`` / ``from_dict``) and
  ``dims`` (a dict of ints: ``feature_dim``, ``action_dim``, ``state_dim``, ``instruction_dim``, ...);
* ``from_dims(config, dims)`` (classmethod): a fresh policy, as :func:`make_policy` and loading build it;
* ``forward(batch, mean=None) -> (loss, logs)`` for training and ``select_action(batch) -> [B, A]``
  for acting, on batches of (features, state, instruction, action); optionally ``runner(n, max_steps)``
  for a policy that keeps per-episode state (history, action chunks) in closed loop;
* ``fit_head(actions)``: statistics of the training actions, fitted before training.

Saving and loading are the same for every kind (:mod:`hralign.policy.io`: ``config.json`` with the
kind, its config and dims, and ``model.safetensors``). A kind whose hooks are left ``None`` is a
per-frame policy trained and evaluated by the shared per-frame code (:mod:`hralign.policy.train`,
:mod:`hralign.policy.evaluate`, :mod:`hralign.policy.demos`),
so a new kind is one module and one :func:`register_policy` call.

Kinds outside the package register when their module is imported: the modules named in
``HRALIGN_PLUGINS`` (comma-separated) and those of the ``hralign.policies`` entry-point group of
installed distributions (:func:`load_plugins`, called by the commands before they read the registry).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, fields
from importlib.metadata import entry_points
from typing import Any, Callable

from hralign.errors import HRAlignError

PLUGINS_ENV = "HRALIGN_PLUGINS"
ENTRY_POINT_GROUP = "hralign.policies"


@dataclass(frozen=True)
class PolicyKind:
    """One policy kind: what it is (config, policy class), how it trains and how it is evaluated.

    Hooks left ``None`` use the per-frame defaults (:mod:`hralign.policy.factory` names them).
    """

    name: str
    config_class: type = field(metadata={"help": "Dataclass of the model config (to_dict / from_dict)."})
    policy_class: type = field(metadata={"help": "nn.Module with from_dims(config, dims), forward, select_action."})
    train_config_class: type | None = field(default=None, metadata={
        "help": "Training config dataclass (default hralign.policy.TrainConfig)."})
    train: Callable[..., dict[str, Any]] | None = field(default=None, metadata={
        "help": "(pairs_path, source, out, config, train, progress, **inputs) -> summary: `policy train`."})
    evaluate: Callable[..., dict[str, Any]] | None = field(default=None, metadata={
        "help": "(policy, meta, policy_dir, pairs_path, source, labels, progress, placement) -> result: `policy eval`."})
    fit_demos: Callable[..., tuple[Any, dict[str, Any], Any]] | None = field(default=None, metadata={
        "help": "(config, DemoSet, DemoTraining) -> (policy, finals, instructions): `sim eval`'s training."})
    demo_error: Callable[..., float | None] | None = field(default=None, metadata={
        "help": "(policy, DemoSet, instructions) -> action MSE on the demo frames it trained on."})
    demo_clips: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]] | None = field(default=None, metadata={
        "help": "(options, pairs, clips) -> every clip whose features fit_demos reads (default: clips)."})
    inputs: tuple[str, ...] = field(default=(), metadata={
        "help": "Extra inputs `policy train` passes to `train` (the latent policy: labels, lam)."})
    early_stopping: bool = field(default=True, metadata={
        "help": "Whether `sim eval`'s held-out early stopping applies (a held-out share of demos is then split off)."})
    closed_loop_defaults: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Config fields `sim eval` sets unless given (GR-1: gripper_dims 'none', MetaWorld's gripper in [-1, 1])."})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise HRAlignError(f"`name` should be a word such as 'bc' but the value passed is {self.name!r}")
        for attr in ("to_dict", "from_dict"):
            if not hasattr(self.config_class, attr):
                raise HRAlignError(f"policy kind {self.name!r}: config class {self.config_class.__name__} has no "
                                   f"`{attr}` (subclass hralign.policy.config.FromDict)")
        for attr in ("from_dims", "forward", "select_action"):
            if not hasattr(self.policy_class, attr):
                raise HRAlignError(f"policy kind {self.name!r}: policy class {self.policy_class.__name__} has no "
                                   f"`{attr}`")

    def config_fields(self) -> set[str]:
        """Field names of the model config."""
        return {f.name for f in fields(self.config_class)}

    def make_config(self, **given: Any) -> Any:
        """The kind's config from the fields given (the others keep the class defaults)."""
        unknown = sorted(set(given) - self.config_fields())
        if unknown:
            raise HRAlignError(f"policy kind {self.name!r}: unknown config fields {unknown}; known: "
                               f"{sorted(self.config_fields())}")
        return self.config_class(**given)


POLICY_KINDS: dict[str, PolicyKind] = {}


def register_policy(kind: PolicyKind) -> PolicyKind:
    """Add ``kind`` to the registry under ``kind.name``; a name taken by another kind is an error."""
    if not isinstance(kind, PolicyKind):
        raise HRAlignError(f"register_policy: expected a PolicyKind, got {type(kind).__name__}")
    have = POLICY_KINDS.get(kind.name)
    if have is not None and have != kind:
        raise HRAlignError(f"policy kind {kind.name!r} is already registered ({have.policy_class.__module__}."
                           f"{have.policy_class.__name__})")
    POLICY_KINDS[kind.name] = kind
    return kind


def get_policy_kind(name: str, where: str = "--kind") -> PolicyKind:
    """The registered kind ``name``; an unknown name lists the known ones."""
    if name not in POLICY_KINDS:
        load_plugins()
    if name not in POLICY_KINDS:
        raise HRAlignError(f"{where}: policy kind {name!r} unknown; known: {', '.join(POLICY_KINDS)} (a kind outside "
                           f"hralign registers through {PLUGINS_ENV}=module or the {ENTRY_POINT_GROUP!r} entry points)")
    return POLICY_KINDS[name]


def kind_of(config: Any) -> PolicyKind:
    """The registered kind whose config class is ``type(config)`` (the most derived match)."""
    for kind in POLICY_KINDS.values():
        if type(config) is kind.config_class:
            return kind
    raise HRAlignError(f"no policy kind is registered for config class {type(config).__name__}; known kinds: "
                       f"{', '.join(POLICY_KINDS)}")


def make_policy(config: Any, dims: dict[str, int], source: str = "config") -> Any:
    """A fresh policy of ``config``'s kind for data of ``dims`` (the one constructor every caller uses)."""
    kind = kind_of(config)
    try:
        return kind.policy_class.from_dims(config, dims)
    except KeyError as e:
        raise HRAlignError(f"{source}: 'dims' lacks {e}") from e


_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import the plugin modules (``HRALIGN_PLUGINS`` and the ``hralign.policies`` entry points) not imported
    yet; each registers its kinds. Returns the modules imported by this call; a module that cannot be
    imported is a one-line error naming it."""
    names = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    done = []
    for label, load in [(n, lambda n=n: importlib.import_module(n)) for n in names] + \
                       [(f"entry point {ep.name} ({ep.value})", ep.load) for ep in eps]:
        if label in _loaded:
            continue
        try:
            load()
        except ImportError as e:
            raise HRAlignError(f"{PLUGINS_ENV if ' ' not in label else ENTRY_POINT_GROUP}: cannot import {label}: "
                               f"{e}") from e
        _loaded.add(label)
        done.append(label)
    return done
