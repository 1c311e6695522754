"""Merge pairs files into one: tasks reconciled by text, clip indices remapped, splits kept.

Files are appended in the order given, domain by domain, clip by clip (one clip in memory). A
task is the same task in two files when its text is (lower case, collapsed whitespace and final
punctuation ignored, as ``pairs pair --by text`` compares them); the first spelling is kept. Pairs
are remapped to the merged clip indices. ``/split`` and the per-clip ``clip_split`` are carried
over; when some inputs have a ``/split`` and others do not, the merge stops and names the file
without it (a per-clip split that only some inputs have is dropped, with a warning).

Frames of a domain must have one size in the merged file: inputs whose frame sizes, or whose
actions/state widths, differ from the first file's are refused before anything is written, with
one line naming the file (re-import with the same ``--image-size`` to merge them).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.pairing import normalize_text
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import check_valid
from hralign.pairs.writer import PairsWriter, check_not_an_input


@dataclass
class MergeReport:
    """Counts of the merged file."""

    out: Path
    files: int
    tasks: int
    clips: dict[str, int]
    pairs: int
    reconciled: int  # input tasks that joined a task of an earlier file

    def line(self) -> str:
        clips = ", ".join(f"{n} {d} clips" for d, n in self.clips.items())
        return (f"wrote {self.out}: {self.files} files merged, {self.pairs} pairs, {clips}, {self.tasks} tasks "
                f"({self.reconciled} tasks shared between files)")


def _check_compatible(files: list[PairsFile]) -> dict[str, bool]:
    """One line naming the first file that cannot join the others (frame size, per-frame arrays, /split).

    Returns, per domain, whether every input with that domain has a per-clip split (else it is dropped
    with a warning: ``/split`` of the pairs is what training reads).
    """
    first: dict[str, tuple[PairsFile, tuple]] = {}
    for pf in files:
        for d in pf.domains:
            sig = (pf.frame_shape(d),
                   *(pf.read_clip(d, 0, frames=[0], name=n).shape[1] if pf.has(d, n) else None for n in S.PER_FRAME_OPTIONAL))
            if d not in first:
                first[d] = (pf, sig)
                continue
            ref, rsig = first[d]
            if sig[0] != rsig[0]:
                raise HRAlignError(f"{pf.path}: {d} frames are {list(sig[0])} but {ref.path} has {list(rsig[0])}; "
                                   "all clips of a domain share one size (re-import both with the same --image-size)")
            for k, name in enumerate(S.PER_FRAME_OPTIONAL, start=1):
                if sig[k] != rsig[k]:
                    found, expected = ("none" if v is None else f"{v} values per frame" for v in (sig[k], rsig[k]))
                    raise HRAlignError(f"{pf.path}: {d} {name} has {found} but {ref.path} has {expected}")
    keep = {d: all(pf.clip_split(d) is not None for pf in files if d in pf.domains) for d in first}
    for d, ok in keep.items():
        if not ok and any(pf.clip_split(d) is not None for pf in files if d in pf.domains):
            lacks = next(pf for pf in files if d in pf.domains and pf.clip_split(d) is None)
            warnings.warn(f"{lacks.path}: has no /{d}/{S.CLIP_SPLIT}; the merged file keeps no per-clip split for {d} "
                          "(the pairs' /split is kept)", stacklevel=3)
    with_pairs = [pf for pf in files if pf.num_pairs]
    split = [pf for pf in with_pairs if pf.split is not None]
    if split and len(split) != len(with_pairs):
        lacks = next(pf for pf in with_pairs if pf.split is None)
        raise HRAlignError(f"{lacks.path}: has no /{S.SPLIT} but {split[0].path} has one; add one with "
                           f"`hralign pairs split {lacks.path} --out ...` first")
    return keep


def merge_files(inputs: list[str | os.PathLike], out: str | os.PathLike, compression: str | None = "lzf",
                overwrite: bool = False) -> MergeReport:
    """Merge the pairs files ``inputs`` into ``out`` (written atomically; inputs only read)."""
    if len(inputs) < 2:
        raise HRAlignError(f"merge needs at least two input files but got {len(inputs)}")
    out = Path(out)
    check_not_an_input(out, inputs)
    for p in inputs:
        check_valid(p)
    if out.exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    files = [PairsFile(p) for p in inputs]
    keep_clip_split = _check_compatible(files)
    task_of: dict[str, str] = {}  # normalised text -> first spelling
    reconciled = 0
    clips = {d: 0 for d in S.DOMAINS}
    pairs = 0
    with PairsWriter(out, compression=compression, overwrite=overwrite) as w:
        w.set_attr("merged_from", json.dumps([str(p) for p in inputs]))
        for pf in files:
            remap = []
            for t in pf.tasks:
                key = normalize_text(t)
                if key in task_of:
                    reconciled += 1
                else:
                    task_of[key] = t
                remap.append(w.add_task(task_of[key]))
            offset = dict(clips)  # clips of earlier files come first
            for d in S.DOMAINS:
                if d not in pf.domains:
                    continue
                split = pf.clip_split(d) if keep_clip_split[d] else None
                tasks = pf.clip_tasks(d)
                for c in range(pf.num_clips(d)):
                    extra = {n: pf.read_clip(d, c, name=n) for n in S.PER_FRAME_OPTIONAL if pf.has(d, n)}
                    w.add_clip(d, pf.read_clip(d, c), remap[int(tasks[c])], **extra,
                               split=None if split is None else int(split[c]))
                    clips[d] += 1
            for k, (h, r) in enumerate(pf.pairs.tolist()):
                w.add_pair(h + offset["human"], r + offset["robot"],
                           split=None if pf.split is None else int(pf.split[k]))
                pairs += 1
            pf.close()
        n_tasks = len(w.tasks)
    return MergeReport(out, len(files), n_tasks, clips, pairs, reconciled)
