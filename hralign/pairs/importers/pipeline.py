"""The import pipeline shared by every importer: decode, resample, resize, compress, pair, split, resume.

:func:`run_import` takes an importer's :class:`~hralign.pairs.importers.source.ImportPlan` and
writes one pairs file:

* Each clip is decoded by a worker process (a ``ProcessPoolExecutor``; ``workers=1`` runs in this
  process), resampled to ``fps`` by its source timestamps, its actions/state rows picked nearest in
  time to each kept frame, resized (centre crop or letterbox) and written, already compressed, to
  its own small shard file ``.OUT.partial/clip_NNNNNN.h5`` (temporary name + rename, so a shard
  that exists is complete). A worker holds one clip in memory.
* The main process appends shards to a :class:`~hralign.pairs.writer.PairsWriter` in plan order,
  copying the compressed frame chunks as they are (no recompression), then adds the pairs (every
  human x every robot clip of a ``pair_key``) and their split; the writer renames the file into
  place only at the end, so ``OUT`` is never half-written.
* ``resume=True`` continues a killed import: shards already in ``.OUT.partial/`` are reused (the
  partial folder records a fingerprint of the plan, the options and each source file's size and
  modification time; a mismatch is an error naming the changed file), the writer's temporary files
  that the killed run left beside ``OUT`` are removed, and
  because the file is assembled from shards in plan order, the result has the same content hash
  (:func:`content_hash`) as an uninterrupted import. The partial folder is removed on success.
* Just before the rename, the partial folder records the finished file's identity and the report;
  the JSON report is written after the rename, then the partial folder goes. A run killed after the
  rename is thus finished by ``resume=True`` (report written, partial folder removed) instead of
  being rebuilt or refused.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import zlib
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np

from hralign.atomic import stale_temporaries, write_text_atomic
from hralign.config_checks import check_fraction, check_int
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.source import ClipSource, ImportPlan
from hralign.pairs.split import DEFAULT_VAL_FRACTION
from hralign.pairs.writer import PairsWriter, check_compression, frame_filter

RESIZE_MODES = ("crop", "letterbox")
# Chosen by benchmarks/import_scale.py (docs/pairs.md, "Import at scale"): on AV1-decoded frames blosc
# (zstd 3, bit shuffle) stores 0.77 of raw bytes and reads ~41k frames/s; lzf 0.89 at ~45k; gzip 0.70 at ~24k.
DEFAULT_COMPRESSION = "blosc"
SHARD_FORMAT = 1  # bump when the shard layout changes (old partial folders are then refused on --resume)
STAMP = "fingerprint.json"  # in the partial folder: what the import is made of (written before any clip)
FINISHED = "finished.json"  # in the partial folder: the finished file's identity, written just before its rename


@dataclass
class ImportConfig:
    """How :func:`run_import` turns an import plan into a pairs file (the same for every importer)."""

    fps: float | None = field(default=None, metadata={"help": "Resample every clip to this frame rate by its source "
                                                               "timestamps (default: keep every frame)."})
    image_size: int | None = field(default=128, metadata={"help": "Side of the square frames written (0 or None: keep "
                                                                  "the source size; all clips of a domain must then match)."})
    resize: str = field(default="crop", metadata={"help": "crop: centre-crop to a square then resize; letterbox: "
                                                          "resize the long side and pad with black."})
    compression: str | None = field(default=DEFAULT_COMPRESSION, metadata={"help": "HDF5 filter for frames: none, gzip, "
                                                                                    "lzf or blosc (hdf5plugin)."})
    workers: int = field(default=2, metadata={"help": "Decode worker processes (1: decode in this process)."})
    val_fraction: float = field(default=DEFAULT_VAL_FRACTION, metadata={"help": "Validation share for clips whose source gives no split "
                                                               "(decided per pair key, so a pair never straddles splits)."})
    seed: int = field(default=0, metadata={"help": "Seed of that split rule."})
    skip_bad: bool = field(default=False, metadata={"help": "Skip clips whose source is bad (a missing or corrupt "
                                                            "file, frames that do not decode, non-finite rows; listed "
                                                            "and counted at the end) instead of stopping with exit 2."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --out (and discard a partial import) if it exists."})
    resume: bool = field(default=False, metadata={"help": "Continue an import of the same sources and options that was "
                                                          "killed (reuses the clips in .OUT.partial/); refused, naming "
                                                          "the file, if a source file changed since (size or mtime)."})

    def __post_init__(self) -> None:
        self.compression = check_compression(self.compression)
        if self.image_size == 0:
            self.image_size = None
        if self.image_size is not None and (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                                            or self.image_size < 8):
            raise HRAlignError(f"`image_size` should be an integer >= 8 (or 0 to keep the source size) "
                               f"but the value passed is {self.image_size!r}")
        if self.fps is not None and (isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not self.fps > 0):
            raise HRAlignError(f"`fps` should be a positive number but the value passed is {self.fps!r}")
        if self.resize not in RESIZE_MODES:
            raise HRAlignError(f"`resize` should be one of {RESIZE_MODES} but the value passed is {self.resize!r}")
        check_int(self.workers, "workers", 1)
        check_fraction(self.val_fraction)
        check_int(self.seed, "seed", 0)

    def content_fields(self) -> dict:
        """The options that change the output's content (they make up the resume fingerprint)."""
        return {k: getattr(self, k) for k in ("fps", "image_size", "resize", "compression", "val_fraction", "seed")}


@dataclass
class ImportReport:
    """What :func:`run_import` did: counts per domain, pairs, and every skipped clip with its reason."""

    out: Path
    clips: dict[str, int]
    frames: dict[str, int]
    pairs: int
    skipped: list[tuple[str, str]]
    unpaired: list[tuple[str, str]] = field(default_factory=list)  # (pair key, reason it gave no pair)
    reused: int = 0  # clips taken from a partial import (--resume)
    notes: list[str] = field(default_factory=list)  # the importer's corrections (ImportPlan.notes)
    report_error: str | None = None  # why the JSON report (run_import's report_to) could not be written

    def lines(self) -> list[str]:
        """The report as printed by ``hralign pairs import``: skipped clips and unpaired keys summarised
        by reason (a count and the first few of each); :meth:`to_json` holds the full lists."""
        imported = ", ".join(f"{n} {d} clips ({self.frames[d]} frames)" for d, n in self.clips.items() if n) or "no clips"
        out = [f"wrote {self.out}: {imported}, {self.pairs} pairs"
               + (f"; {self.reused} clips reused from the partial import" if self.reused else "")]
        out += self.notes
        out += summarise(self.skipped, "skipped {key}: {reason}", "skipped {n} clips: {kind}; the first {k}:")
        out += summarise(self.unpaired, "no pair for key {key}: {reason}", "no pair for {n} keys: {kind}; the first {k}:")
        out.append(f"{sum(self.clips.values())} clips imported, {len(self.skipped)} skipped, {self.pairs} pairs")
        return out

    def to_json(self) -> str:
        """The whole report (every skipped clip and unpaired key) as JSON, for :func:`report_path`."""
        return json.dumps({"out": str(self.out), "clips": self.clips, "frames": self.frames, "pairs": self.pairs,
                           "reused": self.reused, "notes": self.notes,
                           "skipped": [{"key": k, "reason": r} for k, r in self.skipped],
                           "unpaired": [{"key": k, "reason": r} for k, r in self.unpaired]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ImportReport":
        """The report :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(Path(d["out"]), dict(d["clips"]), dict(d["frames"]), int(d["pairs"]),
                   [(e["key"], e["reason"]) for e in d["skipped"]], [(e["key"], e["reason"]) for e in d["unpaired"]],
                   int(d["reused"]), list(d["notes"]))


REPORT_EXAMPLES = 3  # entries shown per reason; the JSON report lists them all (19,388 lines helped nobody)
REPORT_KINDS = 10  # reasons shown; the others are one count


def report_path(out: str | os.PathLike) -> Path:
    """The JSON import report beside ``out``: ``data.h5`` -> ``data.import.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".import.json")


def reason_kind(reason: str) -> str:
    """A reason with its particulars (quoted text, paths, numbers, ids) replaced by '…', so reasons group by kind."""
    return re.sub(r"\S*[\d/\\]\S*", "…", re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason))


def summarise(items: list[tuple[str, str]], line: str, header: str) -> list[str]:
    """(key, reason) items as lines: a kind with few items lists them all, else a count and the first few."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, reason in items:
        groups.setdefault(reason_kind(reason), []).append((key, reason))
    out: list[str] = []
    for j, (kind, group) in enumerate(groups.items()):
        if j == REPORT_KINDS:
            rest = list(groups.values())[j:]
            out.append(f"... and {sum(map(len, rest))} more, for {len(rest)} other reasons")
            break
        if len(group) > REPORT_EXAMPLES:
            out.append(header.format(n=len(group), kind=kind, k=REPORT_EXAMPLES))
        out += [line.format(key=k, reason=r) for k, r in group[:REPORT_EXAMPLES]]
    return out


# -- frames: resampling and resizing (pure functions, used in worker processes) --------------------
def resample_indices(times_s: np.ndarray, fps: float | None) -> np.ndarray:
    """Indices of the source frames kept at ``fps``: for each target time k/fps, the nearest frame.

    Never upsamples (a frame is kept once); ``fps=None`` keeps every frame.
    """
    t = np.asarray(times_s, dtype=np.float64)
    if fps is None or t.size <= 1:
        return np.arange(t.size)
    targets = np.arange(0.0, t[-1] + 0.5 / fps, 1.0 / fps)
    return np.unique(nearest_rows(t, targets))


def nearest_rows(row_times: np.ndarray, query_times: np.ndarray) -> np.ndarray:
    """For each query time, the index of the nearest entry of sorted ``row_times`` (ties: earlier row)."""
    row_times = np.asarray(row_times, dtype=np.float64)
    q = np.asarray(query_times, dtype=np.float64)
    hi = np.clip(np.searchsorted(row_times, q), 1, max(1, row_times.size - 1))
    lo = hi - 1
    if row_times.size == 1:
        return np.zeros(q.shape, dtype=np.int64)
    pick_hi = np.abs(row_times[hi] - q) < np.abs(q - row_times[lo])
    return np.where(pick_hi, hi, lo).astype(np.int64)


def resize_frames(frames: np.ndarray, size: int | None, mode: str) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, size, size, 3) by centre crop or letterbox (Pillow bilinear, antialiased)."""
    from PIL import Image

    if size is None:
        return np.ascontiguousarray(frames)
    out = np.zeros((frames.shape[0], size, size, 3), dtype=np.uint8)
    h, w = frames.shape[1:3]
    for i, fr in enumerate(frames):
        if mode == "crop":
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            img = Image.fromarray(fr[top:top + s, left:left + s])
            out[i] = np.asarray(img.resize((size, size), Image.BILINEAR, reducing_gap=None))
        else:
            scale = size / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            img = Image.fromarray(fr).resize((nw, nh), Image.BILINEAR, reducing_gap=None)
            top, left = (size - nh) // 2, (size - nw) // 2
            out[i, top:top + nh, left:left + nw] = np.asarray(img)
    return out


# -- one clip, in a worker -------------------------------------------------------------------------
def check_finite_rows(name: str, rows: np.ndarray) -> None:
    """Refuse NaN/inf in a clip's float [N, D] actions or state, naming the first bad source row.

    ``pairs validate`` rejects such a file, so this is the pipeline's last guard whatever the importer checked.
    """
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise HRAlignError(f"{name} row {r} (of {rows.shape[0]}) has {rows[r, c]} in column {c} "
                           f"({int(bad.any(axis=1).sum())} rows non-finite), expected finite numbers")


def _per_frame(name: str, rows: np.ndarray | None, step_times: np.ndarray | None, kept: np.ndarray,
               kept_times: np.ndarray, n_decoded: int) -> np.ndarray | None:
    """The actions/state rows for the kept frames: nearest in time, or one-to-one with decoded frames."""
    if rows is None:
        return None
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: refused below like NaN
        rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise HRAlignError(f"{name} should be float [N, D] with N >= 1 but has shape {list(rows.shape)}")
    check_finite_rows(name, rows)
    if step_times is None:
        if rows.shape[0] != n_decoded:
            raise HRAlignError(f"{name} has {rows.shape[0]} rows but the video decoded {n_decoded} frames "
                               "(rows without step times must match frames one to one)")
        return rows[kept]
    return rows[nearest_rows(step_times, kept_times)]


def process_clip(clip: ClipSource, shard: Path, config: ImportConfig) -> int:
    """Decode, resample and resize one clip and write it to ``shard`` (atomically); returns its frame count."""
    frames, times = clip.frames.read()
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise HRAlignError(f"decoded no frames (shape {list(frames.shape)})")
    kept = resample_indices(times, config.fps)
    kept_times = np.asarray(times, dtype=np.float64)[kept]
    step_times = None if clip.step_times_s is None else np.asarray(clip.step_times_s, dtype=np.float64)
    src = clip.origin or getattr(clip.frames, "path", None)  # named by the row checks: the file the rows came from
    per_frame = {name: _per_frame(name if src is None else f"{src}: {name}", rows, step_times, kept, kept_times,
                                  frames.shape[0])
                 for name, rows in ((S.ACTIONS, clip.actions), (S.STATE, clip.state))}
    out = resize_frames(frames[kept], config.image_size, config.resize)
    del frames
    tmp = shard.with_name(f"{shard.name}.{os.getpid()}.tmp")  # per process: a killed run's orphaned worker may still write it
    with h5py.File(tmp, "w") as h:
        h.create_dataset(S.FRAMES, data=out, chunks=(1, *out.shape[1:]), track_times=False,
                         **frame_filter(config.compression))
        for name, arr in per_frame.items():
            if arr is not None:
                h.create_dataset(name, data=arr, track_times=False)
    os.replace(tmp, shard)
    return int(out.shape[0])


def _work(index: int, clip: ClipSource, shard: Path, config: ImportConfig) -> tuple[int, int | None, str | None]:
    """Worker entry: (index, frames, None) or (index, None, one-line reason) for a clip that is bad input."""
    try:
        return index, process_clip(clip, shard, config), None
    except HRAlignError as e:
        return index, None, str(e)


# -- splits and pairs ------------------------------------------------------------------------------
def _rule_split(name: str, val_fraction: float, seed: int) -> int:
    """0/1 from a stable hash of ``name`` (a pair key or clip key) and the seed: order-free, so resume-safe."""
    if val_fraction <= 0:
        return S.SPLIT_TRAIN
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    return S.SPLIT_VAL if rng.random() < val_fraction else S.SPLIT_TRAIN


def clip_splits(clips: list[ClipSource], val_fraction: float, seed: int) -> list[int]:
    """The split of every clip: its own, else its pair key's (the first explicit one among the key's
    clips, else the hash rule on the key), else the hash rule on its key."""
    by_key: dict[str, int] = {}
    for c in clips:
        if c.pair_key is not None and c.split is not None:
            by_key.setdefault(c.pair_key, int(c.split))
    out = []
    for c in clips:
        if c.split is not None:
            out.append(int(c.split))
        elif c.pair_key is not None:
            out.append(by_key.setdefault(c.pair_key, _rule_split("pair:" + c.pair_key, val_fraction, seed)))
        else:
            out.append(_rule_split("clip:" + c.key, val_fraction, seed))
    return out


# -- resume bookkeeping ----------------------------------------------------------------------------
def source_files(plan: ImportPlan) -> dict[str, list[int] | None]:
    """Size and mtime_ns of every file the plan's frames come from (None: missing), for the resume check.

    Actions and state are read into the plan itself (so the fingerprint covers their values); frames are
    decoded later, so a video replaced in place is only seen through its identity.
    """
    found: dict[str, list[int] | None] = {}
    for c in plan.clips:
        path = getattr(c.frames, "path", None)
        if path is None or str(path) in found:
            continue
        try:
            st = os.stat(path)
            found[str(path)] = [int(st.st_size), int(st.st_mtime_ns)]
        except OSError:  # a missing or unreadable file: its clips fail (or are skipped) when decoded
            found[str(path)] = None
    return found


def _fingerprint(plan: ImportPlan, config: ImportConfig, sources: dict[str, list[int] | None]) -> str:
    """sha256 of what decides the output: the options, every clip's description and arrays, the source files."""
    h = hashlib.sha256(json.dumps({"shard_format": SHARD_FORMAT, **config.content_fields()}, sort_keys=True).encode())
    for c in plan.clips:
        h.update(repr((c.key, c.domain, c.instruction, repr(c.frames), c.split, c.pair_key)).encode("utf-8"))
        for arr in (c.actions, c.state, c.step_times_s):
            h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(sources, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def partial_dir(out: str | os.PathLike) -> Path:
    """Where an import of ``out`` keeps its finished clips until the file is complete."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def _changed_source(old: object, sources: dict[str, list[int] | None]) -> str | None:
    """One line naming the first source file whose size or mtime differs from the partial import's record."""
    if not isinstance(old, dict):
        return None
    for path, now in sources.items():
        if path in old and old[path] != now:
            was = "missing" if old[path] is None else f"{old[path][0]} bytes, mtime_ns {old[path][1]}"
            is_ = "missing" if now is None else f"{now[0]} bytes, mtime_ns {now[1]}"
            return (f"{path}: source file changed since the partial import was made (was {was}, now {is_}); "
                    "its clips may differ, so --resume is refused: pass --overwrite to import again")
    return None


def _check_stamp(part: Path, fingerprint: str, sources: dict[str, list[int] | None]) -> None:
    """Refuse a partial import made from other sources or options (naming the changed file if one did)."""
    try:
        recorded = json.loads((part / STAMP).read_text())
        found = recorded["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded, found = {}, None
    if found != fingerprint:
        changed = _changed_source(recorded.get("sources") if isinstance(recorded, dict) else None, sources)
        raise HRAlignError(changed or f"{part}: partial import was made from other sources or options than "
                           "this one; rerun with the same ones, or pass --overwrite to start over")


def _prepare_partial(out: Path, fingerprint: str, sources: dict[str, list[int] | None], config: ImportConfig) -> Path:
    part = partial_dir(out)
    if part.exists() and config.resume and (part / STAMP).exists():
        _check_stamp(part, fingerprint, sources)
        return part
    if part.exists():
        # a partial folder without a stamp (made by an older version, killed right after creating it)
        # holds nothing to reuse, and --resume starts it afresh
        if not config.overwrite and not config.resume:
            raise HRAlignError(f"{part}: a partial import of {out.name} exists; pass --resume to continue it "
                               "or --overwrite to start over")
        shutil.rmtree(part)
    # made under another name with its stamp, then renamed: the folder never exists without its stamp,
    # so an empty one can only be the end of a finished import's cleanup (see _finished_import)
    new = part.with_name(part.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    (new / STAMP).write_text(json.dumps({"fingerprint": fingerprint, "sources": sources}))
    os.rename(new, part)
    return part


def _identity(path: Path) -> list[int]:
    """What tells one file from another on this filesystem: device, inode, size, mtime (kept by a rename)."""
    st = os.stat(path)
    return [int(st.st_dev), int(st.st_ino), int(st.st_size), int(st.st_mtime_ns)]


def _record_finished(part: Path, tmp: Path, report: ImportReport) -> None:
    """Record, before the finished file is renamed to OUT, its identity and the import's report."""
    rec = part / FINISHED
    staged = rec.with_name(rec.name + ".tmp")
    staged.write_text(json.dumps({"identity": _identity(tmp), "report": json.loads(report.to_json())}))
    os.replace(staged, rec)


def _remove_partial(part: Path) -> None:
    """Remove the partial folder, its finished-record last (a cleanup killed midway is then recognised)."""
    try:
        for p in part.iterdir():
            if p.name != FINISHED:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        (part / FINISHED).unlink(missing_ok=True)
        part.rmdir()
    except FileNotFoundError:
        pass


def _finished_import(out: Path, fingerprint: str, sources: dict[str, list[int] | None]) -> ImportReport | None:
    """The report of an import of ``out`` that was killed after renaming ``out`` into place (only its
    cleanup was left), or None. ``out`` must be the very file that import recorded (same inode, size and
    mtime), so an older output beside a partial import (of an --overwrite run) is never mistaken for it."""
    part = partial_dir(out)
    if not out.is_file() or not part.is_dir():
        return None
    rec = part / FINISHED
    if rec.exists():
        try:
            d = json.loads(rec.read_text())
            same = d["identity"] == _identity(out)
            report = ImportReport.from_json(json.dumps(d["report"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not same:
            return None
        if (part / STAMP).exists():
            _check_stamp(part, fingerprint, sources)
        return report
    if not any(part.iterdir()):  # emptied by that cleanup, killed before its last rmdir
        try:
            return ImportReport.from_json(report_path(out).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            from hralign.pairs.reader import PairsFile

            with PairsFile(out) as f:
                return ImportReport(out, {d: f.num_clips(d) for d in S.DOMAINS},
                                    {d: int(f.clip_lengths(d).sum()) for d in S.DOMAINS}, f.num_pairs, [])
    return None


def _shard(part: Path, i: int) -> Path:
    return part / f"clip_{i:06d}.h5"


def _skip_marker(part: Path, i: int) -> Path:
    return part / f"clip_{i:06d}.skip.json"


# -- the pipeline ----------------------------------------------------------------------------------
def _text_problem(text: str) -> str | None:
    """Why an instruction cannot be stored as HDF5 UTF-8 text (None: it can)."""
    if "\0" in text:
        return f"holds a NUL character at position {text.index(chr(0))}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"holds {text[e.start]!r} at position {e.start}, which is not encodable as UTF-8"
    return None


def _check_plan(plan: ImportPlan, skip_bad: bool) -> ImportPlan:
    """The plan checked before anything is written: its bad clips (the importer's and those whose instruction
    no pairs file can store) refused, or skipped with ``skip_bad``; a plan an importer built wrongly refused."""
    unstorable: list[tuple[str, str]] = []
    for c in plan.clips:
        why = _text_problem(c.instruction) if isinstance(c.instruction, str) else None
        if why is not None:
            origin = c.origin or getattr(c.frames, "path", None)
            where = f"{origin}: " if origin is not None else ""
            unstorable.append((c.key, f"{where}instruction {c.instruction!r} {why}, expected text a pairs file "
                                      "can store (no NUL, valid UTF-8)"))
    if unstorable:
        drop = {k for k, _ in unstorable}
        plan = replace(plan, clips=[c for c in plan.clips if c.key not in drop], bad=[*plan.bad, *unstorable])
    plan = _bad_clips(plan, skip_bad)
    if not plan.clips:
        skipped = f" ({len(plan.skipped)} skipped, first: {plan.skipped[0][0]}: {plan.skipped[0][1]})" if plan.skipped else ""
        raise HRAlignError(f"the importer found no clips to import{skipped}")
    seen: set[str] = set()
    for c in plan.clips:
        if c.domain not in S.DOMAINS:
            raise HRAlignError(f"clip {c.key}: domain {c.domain!r}, expected one of {S.DOMAINS}")
        if c.key in seen:
            raise HRAlignError(f"clip key {c.key!r} appears twice in the import plan; keys must be unique")
        if not isinstance(c.instruction, str) or not c.instruction.strip():
            raise HRAlignError(f"clip {c.key}: empty instruction, expected the task's text")
        if c.split not in (None, S.SPLIT_TRAIN, S.SPLIT_VAL):
            raise HRAlignError(f"clip {c.key}: split {c.split!r}, expected None, 0 (train) or 1 (validation)")
        seen.add(c.key)
    return plan


def _bad_clips(plan: ImportPlan, skip_bad: bool) -> ImportPlan:
    """The plan with the importer's bad clips counted as skipped, or the first one's error without ``skip_bad``."""
    if not plan.bad:
        return plan
    if not skip_bad:
        key, reason = plan.bad[0]
        more = f"; {len(plan.bad) - 1} more bad clip{'s' if len(plan.bad) > 2 else ''}" if len(plan.bad) > 1 else ""
        raise HRAlignError(f"clip {key}: {reason} (pass --skip-bad to skip such clips{more})")
    return replace(plan, skipped=[*plan.skipped, *plan.bad], bad=[])


def run_import(plan: ImportPlan, out: str | os.PathLike, config: ImportConfig | None = None,
               progress: bool = True, attrs: dict[str, str] | None = None,
               report_to: str | os.PathLike | None = None) -> ImportReport:
    """Write the clips of ``plan`` to the pairs file ``out`` and return what was imported and skipped.

    Parameters
    ----------
    plan : ImportPlan
        An importer's clips (see :mod:`hralign.pairs.importers.source`).
    out : path
        The pairs file; it appears only when the import is complete.
    config : ImportConfig
        Frame rate, size, compression, workers, split rule, overwrite and resume.
    progress : bool
        Show a tqdm bar (only on a terminal).
    attrs : dict, optional
        Provenance stored as root attributes (e.g. the importer and its options).
    report_to : path, optional
        Also write the report as JSON there (atomically, after ``out`` is in place and before the partial
        folder goes, so a killed run's --resume rewrites it); a failure is kept in ``report_error``.
    """
    cfg = config or ImportConfig()
    out = Path(out)
    plan = _check_plan(plan, cfg.skip_bad)
    sources = source_files(plan)
    fingerprint = _fingerprint(plan, cfg, sources)
    if cfg.resume:  # clean what a killed run of this output left: the writer's and the report's temporary files
        for stale in [*stale_temporaries(out), *(stale_temporaries(report_to) if report_to is not None else [])]:
            stale.unlink(missing_ok=True)
        finished = _finished_import(out, fingerprint, sources)
        if finished is not None:  # killed after renaming OUT into place: the file is complete, only cleanup was left
            finished.notes.append(f"{out} was complete (a run killed while cleaning up had written it); "
                                  "finished its cleanup")
            return _finish(finished, partial_dir(out), report_to)
    if out.exists() and not cfg.overwrite:
        if cfg.resume and partial_dir(out).exists():  # an --overwrite import of an existing OUT, killed
            raise HRAlignError(f"{out}: output exists beside a partial import of it that did not replace it yet; "
                               "pass --overwrite with --resume to continue that import")
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    part = _prepare_partial(out, fingerprint, sources, cfg)
    (part / FINISHED).unlink(missing_ok=True)  # killed before its rename: that finished file is a stale temporary
    for stale in stale_temporaries(out):  # what a killed run of this output left (PairsWriter's temporary file)
        stale.unlink(missing_ok=True)
    clips = plan.clips
    splits = clip_splits(clips, cfg.val_fraction, cfg.seed)
    skipped: list[tuple[str, str]] = list(plan.skipped)
    reused = sum(1 for i in range(len(clips)) if _shard(part, i).exists() or _skip_marker(part, i).exists())
    from tqdm.auto import tqdm

    bar = tqdm(total=len(clips), desc="import", unit="clip", disable=None if progress else True)
    placed: dict[int, tuple[str, int]] = {}  # plan index -> (domain, clip index in the file)
    try:
        with PairsWriter(out, compression=cfg.compression, overwrite=cfg.overwrite) as w:
            for k, v in (attrs or {}).items():
                w.set_attr(k, v)
            for i, result in _results(clips, part, cfg):
                c = clips[i]
                if result is not None:  # bad input in this clip
                    if not cfg.skip_bad:
                        raise HRAlignError(f"clip {c.key}: {result} (pass --skip-bad to skip such clips; "
                                           f"--resume reuses the {i} clips done)")
                    if len(skipped) - len(plan.skipped) < REPORT_EXAMPLES:  # the rest: in the summary at the end
                        tqdm.write(f"warning: skipping clip {c.key}: {result}", file=sys.stderr)
                    skipped.append((c.key, result))
                else:
                    placed[i] = _assemble_clip(w, _shard(part, i), c, splits[i])
                bar.update(1)
            unpaired = _add_pairs(w, clips, placed, splits)
            counts = {d: w.num_clips(d) for d in S.DOMAINS}
            frames = {d: w.num_frames(d) for d in S.DOMAINS}
            if not any(counts.values()):
                shutil.rmtree(part, ignore_errors=True)  # every clip skipped: nothing a --resume could reuse
                raise HRAlignError(f"no clip could be imported ({len(skipped)} skipped; first: "
                                   f"{skipped[0][0]}: {skipped[0][1]})" if skipped else "no clip could be imported")
            report = ImportReport(out, counts, frames, w.num_pairs, skipped, unpaired, reused, list(plan.notes))
            w.close(before_rename=lambda tmp: _record_finished(part, tmp, report))
    finally:
        bar.close()
    return _finish(report, part, report_to)


def _finish(report: ImportReport, part: Path, report_to: str | os.PathLike | None) -> ImportReport:
    """After OUT is in place: write the JSON report, then remove the partial folder."""
    if report_to is not None:
        try:
            write_text_atomic(report_to, report.to_json())
        except OSError as e:
            report.report_error = str(e)
    _remove_partial(part)
    return report


def _results(clips: list[ClipSource], part: Path, cfg: ImportConfig):
    """Yield (plan index, None or the reason a clip is bad) in plan order, decoding what is not done yet.

    Finished shards and skip markers of a partial import are reused. Work is submitted ahead by at
    most ``2 * workers`` clips, so memory stays bounded whatever the plan's size.
    """
    def done(i: int) -> str | None | bool:
        if _shard(part, i).exists():
            return None
        marker = _skip_marker(part, i)
        if marker.exists():
            return json.loads(marker.read_text())["reason"]
        return False

    def record(i: int, reason: str | None) -> str | None:
        if reason is not None and cfg.skip_bad:  # remembered, so a resumed import skips it without decoding
            tmp = _skip_marker(part, i).with_suffix(".tmp")
            tmp.write_text(json.dumps({"reason": reason}))
            os.replace(tmp, _skip_marker(part, i))
        return reason

    if cfg.workers == 1:
        for i, c in enumerate(clips):
            prior = done(i)
            if prior is False:
                _, _, reason = _work(i, c, _shard(part, i), cfg)
                prior = record(i, reason)
            yield i, prior
        return
    ctx = multiprocessing.get_context("spawn")  # fork would copy the parent's threads and open handles
    with cf.ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx) as pool:
        pending: dict[int, cf.Future] = {}
        nxt = 0
        try:
            for i in range(len(clips)):
                while nxt < len(clips) and len(pending) < 2 * cfg.workers:
                    if done(nxt) is False:
                        pending[nxt] = pool.submit(_work, nxt, clips[nxt], _shard(part, nxt), cfg)
                    nxt += 1
                if i in pending:
                    try:
                        _, _, reason = pending.pop(i).result()
                    except BrokenProcessPool as e:
                        raise HRAlignError(
                            f"a decode worker process died while importing clip {clips[i].key} ({e}); out of memory, "
                            "or run_import called from a script without `if __name__ == '__main__':` (workers are "
                            "spawned and re-import the script); --resume continues, --workers 1 decodes in-process"
                        ) from e
                    yield i, record(i, reason)
                else:
                    yield i, done(i)
        finally:
            for f in pending.values():
                f.cancel()


def _assemble_clip(w: PairsWriter, shard: Path, clip: ClipSource, split: int) -> tuple[str, int]:
    """Append one shard to the writer (frame chunks copied compressed) and return (domain, clip index)."""
    try:
        with h5py.File(shard, "r") as h:
            actions = h[S.ACTIONS][()] if S.ACTIONS in h else None
            state = h[S.STATE][()] if S.STATE in h else None
            idx = w.add_clip_chunks(clip.domain, h[S.FRAMES], clip.instruction, actions=actions, state=state, split=split)
    except HRAlignError as e:
        raise HRAlignError(f"clip {clip.key}: {e}") from e
    return clip.domain, idx


def _add_pairs(w: PairsWriter, clips: list[ClipSource], placed: dict[int, tuple[str, int]],
               splits: list[int]) -> list[tuple[str, str]]:
    """Every human x every robot clip of each pair key (same instruction); returns keys that gave no pair."""
    groups: dict[str, dict[str, list[int]]] = {}
    for i, c in enumerate(clips):
        if c.pair_key is not None:
            groups.setdefault(c.pair_key, {"human": [], "robot": []})[c.domain].append(i)
    unpaired: list[tuple[str, str]] = []
    for key, g in groups.items():
        humans = [i for i in g["human"] if i in placed]
        robots = [i for i in g["robot"] if i in placed]
        if not humans or not robots:
            missing = "human" if not humans else "robot"
            why = "skipped" if g[missing] else "none in the source"
            unpaired.append((key, f"no {missing} clip ({why})"))
            continue
        n = 0
        for hi in humans:
            for ri in robots:
                if clips[hi].instruction != clips[ri].instruction:
                    continue
                w.add_pair(placed[hi][1], placed[ri][1], split=splits[ri])
                n += 1
        if n == 0:
            unpaired.append((key, f"human and robot instructions differ ({clips[humans[0]].instruction!r} vs "
                                  f"{clips[robots[0]].instruction!r})"))
    return unpaired


# -- content hash ----------------------------------------------------------------------------------
def content_hash(path: str | os.PathLike, block: int = 1024) -> str:
    """sha256 of a pairs file's content: every dataset's name, dtype, shape and values, and every
    attribute, in sorted order (independent of HDF5's byte layout, chunk allocation or timestamps)."""
    from hralign.pairs.reader import open_h5_readonly

    h = hashlib.sha256()
    with open_h5_readonly(path) as f:
        names: list[str] = []
        f.visit(names.append)
        for obj_name in ["/", *sorted(names)]:
            obj = f[obj_name]
            h.update(obj_name.encode())
            for k in sorted(obj.attrs):
                h.update(f"{k}={obj.attrs[k]!r}".encode())
            if isinstance(obj, h5py.Dataset):
                h.update(f"{obj.dtype}{obj.shape}".encode())
                if obj.shape == () or obj.ndim == 0:
                    h.update(repr(obj[()]).encode())
                    continue
                for lo in range(0, obj.shape[0], block):
                    arr = obj[lo:lo + block]
                    h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    return h.hexdigest()


__all__ = ["ImportConfig", "ImportReport", "report_path", "summarise", "run_import", "content_hash", "partial_dir",
           "resample_indices", "nearest_rows", "resize_frames", "clip_splits", "process_clip", "check_finite_rows",
           "source_files"]
