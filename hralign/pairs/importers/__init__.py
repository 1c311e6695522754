"""Importers for the dataset layouts users hold: a plain-dict registry, one entry per layout.

An importer is a config dataclass (its fields, with ``metadata={"help": ...}``, become the
options of ``hralign pairs import NAME``) and a plan function ``plan_fn(root: Path, config) ->
ImportPlan`` that reads the layout and lists the clips (:mod:`hralign.pairs.importers.source`).
Decoding, resampling, compression, workers and resume are the pipeline's
(:func:`hralign.pairs.importers.pipeline.run_import`), the same for every importer.

Each importer registers itself with ONE line at the end of this file (as PEFT's methods do with
``register_peft_method``). Importer modules import heavy readers (pyarrow, PyAV) inside their
functions, so listing the importers stays cheap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hralign.errors import HRAlignError
from hralign.pairs.importers.pipeline import ImportConfig
from hralign.pairs.importers.source import ClipSource, H5Frames, ImportPlan, VideoSegment

PlanFn = Callable[[Path, object], ImportPlan]


@dataclass(frozen=True)
class ImporterSpec:
    """One registered importer: its name, config dataclass, plan function and one-line help."""

    name: str
    config_cls: type
    plan_fn: PlanFn
    help: str


IMPORTERS: dict[str, ImporterSpec] = {}


def register_importer(name: str, config_cls: type, plan_fn: PlanFn, help: str) -> ImporterSpec:
    """Add an importer to :data:`IMPORTERS`; a name registered twice is an error."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise HRAlignError(f"importer `name` should be a non-empty string but the value passed is {name!r}")
    if name in IMPORTERS:
        raise HRAlignError(f"importer {name!r} is already registered (by {IMPORTERS[name].plan_fn.__module__})")
    if not dataclasses.is_dataclass(config_cls):
        raise HRAlignError(f"importer {name!r}: `config_cls` should be a dataclass but the value passed is {config_cls!r}")
    reserved = {f.name for f in dataclasses.fields(ImportConfig)} | {"out", "root"}
    clash = sorted(reserved & {f.name for f in dataclasses.fields(config_cls)})
    if clash:
        raise HRAlignError(f"importer {name!r}: option `{clash[0]}` clashes with a pipeline option of "
                           "`hralign pairs import`; rename it in the importer's config")
    if not callable(plan_fn):
        raise HRAlignError(f"importer {name!r}: `plan_fn` should be callable but the value passed is {plan_fn!r}")
    spec = ImporterSpec(name, config_cls, plan_fn, help)
    IMPORTERS[name] = spec
    return spec


def get_importer(name: str) -> ImporterSpec:
    """The importer registered as ``name``; an unknown name lists the valid ones."""
    if name not in IMPORTERS:
        raise HRAlignError(f"unknown importer {name!r}; valid importers: {', '.join(sorted(IMPORTERS)) or '(none)'}")
    return IMPORTERS[name]


def plan_import(name: str, root: str | Path, config: object | None = None) -> ImportPlan:
    """Run importer ``name`` on ``root`` (config defaults to the importer's default config)."""
    spec = get_importer(name)
    cfg = spec.config_cls() if config is None else config
    if not isinstance(cfg, spec.config_cls):
        raise HRAlignError(f"importer {name!r}: config should be a {spec.config_cls.__name__} "
                           f"but the value passed is a {type(cfg).__name__}")
    return spec.plan_fn(Path(root), cfg)


__all__ = ["IMPORTERS", "ImporterSpec", "register_importer", "get_importer", "plan_import", "ClipSource",
           "VideoSegment", "H5Frames", "ImportPlan"]

# -- registrations: one line per importer -------------------------------------------------------
# (imported here, at the end, so `register_importer` exists when an importer module is imported first)
from hralign.pairs.importers import folder as _folder, lerobot as _lerobot, robomimic as _robomimic  # noqa: E402

register_importer("lerobot", _lerobot.LeRobotConfig, _lerobot.plan, "A LeRobotDataset v3.0 or v2.1 folder, as shipped.")
register_importer("robomimic", _robomimic.RobomimicConfig, _robomimic.plan, "A robomimic HDF5 file (data/demo_N).")
register_importer("folder", _folder.FolderConfig, _folder.plan, "Any videos listed in a CSV (path, instruction, embodiment).")
from hralign.pairs.importers import ego4d as _ego4d, epic_kitchens as _epic, rh20t as _rh20t, ssv2 as _ssv2  # noqa: E402

register_importer("rh20t", _rh20t.RH20TConfig, _rh20t.plan, "RH20T robot scenes and their _human scenes, paired by scene and camera.")
register_importer("ego4d", _ego4d.Ego4DConfig, _ego4d.plan, "Ego4D videos cut around their narrations (human clips).")
register_importer("epic-kitchens", _epic.EpicKitchensConfig, _epic.plan, "EPIC-KITCHENS-100 action segments (human clips).")
register_importer("ssv2", _ssv2.SSv2Config, _ssv2.plan, "Something-Something v2 webm videos with their labels (human clips).")
