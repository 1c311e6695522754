"""One run-directory rule for every trainer: create, ``--overwrite`` or ``--resume``.

* new run: ``--out`` must be missing or empty; ``--overwrite`` replaces a directory that holds an
  hralign run (``run.json``) and refuses any other;
* ``--resume``: the directory's ``run.json`` must be of the same trainer, with the same config
  except the fields in ``resumable`` (the first other field that differs is named), and the same
  number of processes (each process's share of the global batch depends on it).

Everything is checked before anything is written or deleted (:meth:`RunDir.begin` writes).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

import accelerate
import torch

from hralign import __version__
from hralign.atomic import write_text_atomic
from hralign.errors import HRAlignError
from hralign.metafile import read_json

RUN_FILE = "run.json"
# Config fields renamed since a run.json could have been written, per trainer: old name -> new name.
# read_run applies them, so a run started before a rename still resumes (and is compared by the new name).
RENAMED_FIELDS: dict[str, dict[str, str]] = {"adapt": {"adapter": "method"}}


def _flag(name: str) -> str:
    return "--" + name.split(".")[-1].replace("_", "-")


def config_differences(saved: dict[str, Any], now: dict[str, Any], resumable: tuple[str, ...],
                       prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted field, saved value, new value) of every non-resumable field that differs (nested dicts recursed)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        if key in resumable:
            continue
        a, b = saved.get(key, "<missing>"), now.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, resumable, f"{prefix}{key}.")
        elif a != b:
            out.append((prefix + key, a, b))
    return out


def read_run(out: str | Path) -> dict[str, Any]:
    """``OUT/run.json`` of a training run: {"kind", "config", "world_size", ...}."""
    path = Path(out) / RUN_FILE
    data = read_json(path, f"not found; {out} is not an hralign training run directory")
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or "kind" not in data:
        raise HRAlignError(f"{path}: expected an object with `kind` and `config` (written by an hralign trainer)")
    renamed = RENAMED_FIELDS.get(data["kind"], {})
    data["config"] = {renamed.get(k, k): v for k, v in data["config"].items()}
    return data


class RunDir:
    """The checked run directory of one training run (``kind``: adapt | pretrain | lam | policy)."""

    def __init__(self, out: str | Path, kind: str, config: dict[str, Any], resumable: tuple[str, ...],
                 resume: bool, overwrite: bool, world_size: int, is_main: bool) -> None:
        if not str(out):
            raise HRAlignError("`--out` is required: the run directory")
        self.path, self.kind, self.config = Path(out), kind, config
        self.resume, self.overwrite, self.world_size, self.is_main = resume, overwrite, world_size, is_main
        p = self.path
        if p.exists() and not p.is_dir():
            raise HRAlignError(f"`--out` {p}: exists and is not a directory")
        if resume:
            if not (p / RUN_FILE).is_file():
                raise HRAlignError(f"`--resume`: {p} has no {RUN_FILE} and no checkpoint to resume from; "
                                   "run without --resume to start")
            saved = read_run(p)
            if saved["kind"] != kind:
                raise HRAlignError(f"`--resume`: {p} is a `hralign {saved['kind']}` run, not `{kind}`")
            diff = config_differences(saved["config"], config, resumable)
            if diff:
                name, was, now = diff[0]
                more = f" (and {len(diff) - 1} more: {', '.join(_flag(d[0]) for d in diff[1:])})" if len(diff) > 1 else ""
                raise HRAlignError(f"`--resume`: {p} was run with {_flag(name)} {was!r}, this call passes {now!r}{more}; "
                                   f"only {', '.join(_flag(r) for r in resumable if r not in ('out', 'resume', 'overwrite'))} "
                                   "may change (or start a new --out)")
            if int(saved.get("world_size", 1)) != world_size:
                raise HRAlignError(f"`--resume`: {p} was trained by {saved.get('world_size')} process(es), this run has "
                                   f"{world_size}; resume with the same number (each process's share of the global "
                                   "batch depends on it)")
        elif p.is_dir() and any(p.iterdir()):
            if not overwrite:
                raise HRAlignError(f"`--out` {p}: exists and is not empty; pass --resume to continue it or --overwrite")
            if not (p / RUN_FILE).is_file():
                raise HRAlignError(f"`--out` {p}: --overwrite refused, the directory holds no hralign run "
                                   f"(no {RUN_FILE}); choose another --out")

    def begin(self, record: dict[str, Any] | None = None) -> None:
        """Main process: clear an overwritten run, create the directory, write ``run.json``."""
        if not self.is_main:
            return
        if not self.resume and self.overwrite and self.path.is_dir():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / RUN_FILE, json.dumps(
            {"kind": self.kind, "config": self.config, "world_size": self.world_size, **(record or {}),
             "versions": _versions()}, indent=2, default=str))


def _versions() -> dict[str, str]:
    return {"hralign": __version__, "torch": torch.__version__, "accelerate": accelerate.__version__,
            "python": platform.python_version()}
