"""Merge pairs files into one: tasks reconciled by text, clip indices remapped, splits kept.

Files are appended in the order given, domain by domain, clip by clip (one clip in memory). A
task is the same task in two files when its text is (lower case, collapsed whitespace and final
punctuation ignored, as ``pairs pair --by text`` compares them); the first spelling is kept. Pairs
are remapped to the merged clip indices. ``/split`` and the per-clip ``clip_split`` are carried
over; when some inputs have one and others do not, the merge stops and names the file without it.

Frames of a domain must have one size in the merged file: inputs whose frame sizes, or whose
actions/state widths, differ from the first file's are refused before anything is written, with
one line naming the file (re-import with the same ``--image-size`` to merge them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.pairing import normalize_text
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import check_valid
from hralign.pairs.writer import PairsWriter


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


def _check_compatible(files: list[PairsFile]) -> None:
    """One line naming the first file that cannot join the others (frame size, per-frame arrays, splits)."""
    first: dict[str, tuple[PairsFile, tuple]] = {}
    for pf in files:
        for d in pf.domains:
            sig = (pf.frame_shape(d),
                   *(pf.read_clip(d, 0, frames=[0], name=n).shape[1] if pf.has(d, n) else None for n in S.PER_FRAME_OPTIONAL),
                   pf.clip_split(d) is not None)
            if d not in first:
                first[d] = (pf, sig)
                continue
            ref, rsig = first[d]
            if sig[0] != rsig[0]:
                raise HRAlignError(f"{pf.path}: {d} frames are {list(sig[0])} but {ref.path} has {list(rsig[0])}; "
                                   "all clips of a domain share one size (re-import both with the same --image-size)")
            for k, name in enumerate(S.PER_FRAME_OPTIONAL, start=1):
                if sig[k] != rsig[k]:
                    def what(v):
                        return "none" if v is None else f"{v} values per frame"
                    raise HRAlignError(f"{pf.path}: {d} {name} has {what(sig[k])} but {ref.path} has {what(rsig[k])}")
            if sig[3] != rsig[3]:
                has, lacks = (pf, ref) if sig[3] else (ref, pf)
                raise HRAlignError(f"{lacks.path}: has no /{d}/{S.CLIP_SPLIT} but {has.path} has one; give every input "
                                   "a split or none")
    with_pairs = [pf for pf in files if pf.num_pairs]
    split = [pf for pf in with_pairs if pf.split is not None]
    if split and len(split) != len(with_pairs):
        lacks = next(pf for pf in with_pairs if pf.split is None)
        raise HRAlignError(f"{lacks.path}: has no /{S.SPLIT} but {split[0].path} has one; add one with "
                           f"`hralign pairs split {lacks.path} --out ...` first")


def merge_files(inputs: list[str | os.PathLike], out: str | os.PathLike, compression: str | None = "lzf",
                overwrite: bool = False) -> MergeReport:
    """Merge the pairs files ``inputs`` into ``out`` (written atomically; inputs only read)."""
    if len(inputs) < 2:
        raise HRAlignError(f"merge needs at least two input files but got {len(inputs)}")
    out = Path(out)
    for p in inputs:
        if Path(p).resolve() == out.resolve():
            raise HRAlignError(f"{out}: is also an input; write the merge to a new file")
        check_valid(p)
    if out.exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    files = [PairsFile(p) for p in inputs]
    _check_compatible(files)
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
                split = pf.clip_split(d)
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
