"""``folder DIR --csv F``: any videos under DIR, one CSV row per clip.

Columns: ``path`` (relative to DIR), ``instruction``, ``embodiment`` (human or robot), and
optionally ``start``/``end`` (seconds within the video), ``pair`` (clips of opposite embodiment
with the same value are paired) and ``split`` (train/val). Every row is checked before anything
is decoded: a path outside DIR or a missing file is a one-line error naming the CSV row.

"Outside DIR" is decided on the path as written (absolute, or ``..`` climbing above DIR), not on
where symlinks lead: a Hugging Face hub snapshot is a tree of symlinks into ``../blobs/``, and a
link the user's own tree holds is theirs to follow.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.csvtable import read_csv_records
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

REQUIRED = ("path", "instruction", "embodiment")
SPLITS = {"": None, "train": S.SPLIT_TRAIN, "0": S.SPLIT_TRAIN, "val": S.SPLIT_VAL, "valid": S.SPLIT_VAL,
          "validation": S.SPLIT_VAL, "1": S.SPLIT_VAL}


@dataclass
class FolderConfig:
    """Options of the ``folder`` importer."""

    csv: str = field(metadata={"help": "CSV listing the clips: path, instruction, embodiment (human|robot)"
                                       "[, start, end (seconds), pair, split (train|val)]; paths relative to DIR."})

    def __post_init__(self) -> None:
        if not isinstance(self.csv, str) or not self.csv:
            raise HRAlignError(f"`csv` should be the path of a CSV file but the value passed is {self.csv!r}")


def _seconds(value: str, where: str, column: str) -> float | None:
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        raise HRAlignError(f"{where}: {column} {value!r} is not a number of seconds") from None
    if not v >= 0:
        raise HRAlignError(f"{where}: {column} {value!r}, expected seconds >= 0")
    return v


def inside_path(value: str, what: str, root: Path) -> Path:
    """``value`` as a relative path that stays inside ``root`` as written (``a/../b`` -> ``b``); an empty,
    absolute or climbing path (``../x``, ``a/../../x``) is an error. Symlinks are not resolved here."""
    if not value:
        raise HRAlignError(f"{what} is empty; expected a path relative to {root}")
    if os.path.isabs(value):
        raise HRAlignError(f"{what} {value!r} is outside {root} (an absolute path); paths must be relative to DIR")
    norm = os.path.normpath(value)
    if norm == ".." or norm.startswith("../"):
        raise HRAlignError(f"{what} {value!r} is outside {root} (its '..' climbs above it); paths must stay inside DIR")
    return Path(norm)


def _check_file(path: Path, what: str, root: Path) -> None:
    """A readable regular file (symlinks followed), else one line: not found, a symlink loop, not a file."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise HRAlignError(f"{what}: {path} is a symlink loop (a link pointing back to itself or an ancestor)") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise HRAlignError(f"{what} not found in {root}") from None
        raise HRAlignError(f"{what}: {path} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise HRAlignError(f"{what}: {path} is not a file")


def plan(root: Path, config: FolderConfig) -> ImportPlan:
    """One clip per CSV row (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a folder (expected DIR holding the videos listed in {config.csv})")
    table = Path(config.csv)
    clips: list[ClipSource] = []
    for line, rec in read_csv_records(table, REQUIRED, "CSV", optional=("start", "end", "pair", "split")):
        where = f"{table}: row {line}"
        emb = rec["embodiment"].lower()
        if emb not in S.DOMAINS:
            raise HRAlignError(f"{where}: embodiment {rec['embodiment']!r}, expected human or robot")
        path = root / inside_path(rec["path"], f"{where}: path", root)
        _check_file(path, f"{where}: video {rec['path']!r}", root)
        start = _seconds(rec.get("start", ""), where, "start") or 0.0
        end = _seconds(rec.get("end", ""), where, "end")
        if end is not None and end <= start:
            raise HRAlignError(f"{where}: end {end} <= start {start}, expected a non-empty segment")
        split = rec.get("split", "").lower()
        if split not in SPLITS:
            raise HRAlignError(f"{where}: split {split!r}, expected train, val or empty")
        clips.append(ClipSource(key=f"row{line}:{rec['path']}", domain=emb, instruction=rec["instruction"],
                                frames=VideoSegment(path, start, end), split=SPLITS[split],
                                pair_key=rec.get("pair") or None))
    return ImportPlan(clips=clips)
