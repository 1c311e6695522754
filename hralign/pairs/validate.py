"""Check a pairs file against the layout of docs/design.md (docs/pairs.md) and report EVERY problem, not the first.

``validate`` never raises on a bad file: each check runs on its own, and a check that cannot
even read what it looks at reports that as the problem. Per-frame float data (actions, state)
is scanned for NaN/inf in chunks, so a file larger than memory validates in constant memory;
frames are checked by dtype/shape and by reading the first and last frame (truncation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.reader import open_h5_readonly

CHUNK_ROWS = 65536  # rows of actions/state scanned at a time
FRAME_BLOCK = 256  # frames read at a time by a deep check
MAX_EXAMPLES = 5  # offending indices quoted per problem


def _examples(idx: np.ndarray) -> str:
    idx = np.asarray(idx).ravel()
    shown = ", ".join(str(int(i)) for i in idx[:MAX_EXAMPLES])
    return f"{shown}{', ...' if idx.size > MAX_EXAMPLES else ''} ({idx.size} in all)"


def _attr_str(value) -> object:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def _read_1d_int(h: h5py.File, key: str, problems: list[str]) -> np.ndarray | None:
    """The dataset ``key`` as int64 1-D, or None after reporting why it cannot be used."""
    if key not in h:
        problems.append(f"/{key}: missing (expected int64 [C])")
        return None
    ds = h[key]
    if not isinstance(ds, h5py.Dataset):
        problems.append(f"/{key}: is a group, expected an int64 dataset")
        return None
    if ds.dtype.kind not in "iu":
        problems.append(f"/{key}: dtype {ds.dtype}, expected int64")
        return None
    if ds.ndim != 1:
        problems.append(f"/{key}: shape {list(ds.shape)}, expected 1-D [C]")
        return None
    return np.asarray(ds[()], dtype=np.int64)


def _check_attrs(h: h5py.File, problems: list[str]) -> bool:
    fmt = _attr_str(h.attrs.get(S.FORMAT_ATTR))
    if fmt != S.FORMAT_NAME:
        problems.append(f"/: attribute `{S.FORMAT_ATTR}` is {fmt!r}, expected {S.FORMAT_NAME!r} (not an hralign pairs file)")
        return False
    version = _attr_str(h.attrs.get(S.VERSION_ATTR))
    try:
        ok = version is not None and int(version) == S.FORMAT_VERSION
    except (TypeError, ValueError):
        ok = False
    if not ok:
        problems.append(f"/: attribute `{S.VERSION_ATTR}` is {version!r}, expected {S.FORMAT_VERSION}")
    return True


def _check_tasks(h: h5py.File, problems: list[str]) -> int | None:
    if S.TASKS not in h:
        problems.append(f"/{S.TASKS}: missing (expected utf-8 strings [K])")
        return None
    ds = h[S.TASKS]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or h5py.check_string_dtype(ds.dtype) is None:
        what = "a group" if not isinstance(ds, h5py.Dataset) else f"dtype {ds.dtype} shape {list(ds.shape)}"
        problems.append(f"/{S.TASKS}: {what}, expected utf-8 strings [K]")
        return None
    values = ds.asstr()[()]
    empty = np.flatnonzero([not str(v).strip() for v in values])
    if empty.size:
        problems.append(f"/{S.TASKS}: empty instruction at task {_examples(empty)}")
    return int(ds.shape[0])


def _scan_finite(ds: h5py.Dataset, where: str, problems: list[str]) -> None:
    bad_rows: list[np.ndarray] = []
    count = 0
    for lo in range(0, ds.shape[0], CHUNK_ROWS):
        block = ds[lo:lo + CHUNK_ROWS]
        rows = np.flatnonzero(~np.isfinite(block).all(axis=tuple(range(1, block.ndim))))
        count += rows.size
        if rows.size and sum(len(b) for b in bad_rows) < MAX_EXAMPLES:
            bad_rows.append(rows + lo)
    if count:
        rows = np.concatenate(bad_rows)[:MAX_EXAMPLES]
        more = ", ..." if count > rows.size else ""
        problems.append(f"{where}: NaN or inf at row {', '.join(map(str, rows))}{more} ({count} rows in all), expected finite values")


def _check_domain(h: h5py.File, d: str, num_tasks: int | None, problems: list[str], deep: bool) -> int | None:
    """Check /d and return its clip count (None when its index cannot be used)."""
    g = h[d]
    if not isinstance(g, h5py.Group):
        problems.append(f"/{d}: is a dataset, expected a group")
        return None
    n_frames = None
    if S.FRAMES not in g:
        problems.append(f"/{d}/{S.FRAMES}: missing (expected uint8 [N, H, W, 3])")
    else:
        fr = g[S.FRAMES]
        if not isinstance(fr, h5py.Dataset):
            problems.append(f"/{d}/{S.FRAMES}: is a group, expected uint8 [N, H, W, 3]")
        else:
            if fr.dtype != np.uint8:
                problems.append(f"/{d}/{S.FRAMES}: dtype {fr.dtype}, expected uint8")
            if fr.ndim != 4:
                problems.append(f"/{d}/{S.FRAMES}: shape {list(fr.shape)}, expected 4-D [N, H, W, 3]")
            elif fr.shape[-1] != 3:
                problems.append(f"/{d}/{S.FRAMES}: {fr.shape[-1]} channels (shape {list(fr.shape)}), expected 3 (RGB)")
            n_frames = int(fr.shape[0]) if fr.ndim >= 1 else None
            if n_frames:
                # Quick mode reads the first and last frame (truncation); deep mode streams them all.
                blocks = range(0, n_frames, FRAME_BLOCK) if deep else sorted({0, n_frames - 1})
                for lo in blocks:
                    try:
                        fr[lo:lo + (FRAME_BLOCK if deep else 1)]
                    except Exception as e:  # noqa: BLE001 - a corrupt/truncated chunk is a finding, not a crash
                        problems.append(f"/{d}/{S.FRAMES}: frames from {lo} unreadable ({type(e).__name__}: {e}); "
                                        "the file may be truncated or corrupt")
                        break
    index = {k: _read_1d_int(h, f"{d}/{k}", problems) for k in S.CLIP_INDEX}
    if any(v is None for v in index.values()):
        return None
    start, length, task = index[S.CLIP_START], index[S.CLIP_LENGTH], index[S.CLIP_TASK]
    if not len(start) == len(length) == len(task):
        problems.append(f"/{d}: clip_start, clip_length, clip_task have {len(start)}, {len(length)}, {len(task)} "
                        "entries, expected the same count")
        return None
    if len(start) == 0:
        problems.append(f"/{d}: has no clips (clip_start is empty), expected at least one")
    bad = np.flatnonzero(length < 1)
    if bad.size:
        problems.append(f"/{d}: empty clip (clip_length < 1) at clip {_examples(bad)}")
    bad = np.flatnonzero(start < 0)
    if bad.size:
        problems.append(f"/{d}: negative clip_start at clip {_examples(bad)}")
    if n_frames is not None:
        bad = np.flatnonzero(start + length > n_frames)
        if bad.size:
            c = int(bad[0])
            problems.append(f"/{d}: clips run past the {n_frames} frames at clip {_examples(bad)} "
                            f"(clip {c}: frames {int(start[c])}..{int(start[c] + length[c]) - 1})")
    if num_tasks is not None:
        bad = np.flatnonzero((task < 0) | (task >= num_tasks))
        if bad.size:
            problems.append(f"/{d}/{S.CLIP_TASK}: task index outside 0..{num_tasks - 1} at clip {_examples(bad)}")
    if S.CLIP_SPLIT in g:
        _check_split(g[S.CLIP_SPLIT], f"/{d}/{S.CLIP_SPLIT}", len(start), "clip", problems)
    for name in S.PER_FRAME_OPTIONAL:
        if name not in g:
            continue
        ds = g[name]
        where = f"/{d}/{name}"
        if not isinstance(ds, h5py.Dataset):
            problems.append(f"{where}: is a group, expected float32 [N, D]")
            continue
        if ds.dtype.kind != "f":
            problems.append(f"{where}: dtype {ds.dtype}, expected float32")
            continue
        if ds.ndim != 2:
            problems.append(f"{where}: shape {list(ds.shape)}, expected 2-D [N, D]")
            continue
        if n_frames is not None and ds.shape[0] != n_frames:
            problems.append(f"{where}: {ds.shape[0]} rows, expected one per frame ({n_frames})")
        _scan_finite(ds, where, problems)
    return len(start)


def _check_pairs(h: h5py.File, clips: dict[str, int | None], tasks: dict[str, np.ndarray | None],
                 problems: list[str]) -> None:
    if S.PAIRS not in h:
        problems.append(f"/{S.PAIRS}: missing (expected int64 [P, 2] of (human clip, robot clip))")
        return
    ds = h[S.PAIRS]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iu" or ds.ndim != 2 or ds.shape[1] != 2:
        what = "a group" if not isinstance(ds, h5py.Dataset) else f"dtype {ds.dtype} shape {list(ds.shape)}"
        problems.append(f"/{S.PAIRS}: {what}, expected int64 [P, 2]")
        return
    pairs = np.asarray(ds[()], dtype=np.int64)
    for col, d in enumerate(S.DOMAINS):
        n = clips.get(d)
        if n is None:
            if len(pairs) and d not in h:
                problems.append(f"/{S.PAIRS}: pairs refer to {d} clips but /{d} is missing")
            continue
        bad = np.flatnonzero((pairs[:, col] < 0) | (pairs[:, col] >= n))
        if bad.size:
            p = int(bad[0])
            problems.append(f"/{S.PAIRS}: {d} clip index out of range 0..{n - 1} at pair {_examples(bad)} "
                            f"(pair {p} refers to {d} clip {int(pairs[p, col])})")
    th, tr = tasks.get("human"), tasks.get("robot")
    if th is not None and tr is not None and len(pairs):
        ok = (pairs[:, 0] >= 0) & (pairs[:, 0] < len(th)) & (pairs[:, 1] >= 0) & (pairs[:, 1] < len(tr))
        p = pairs[ok]
        bad = np.flatnonzero(ok)[th[p[:, 0]] != tr[p[:, 1]]]
        if bad.size:
            problems.append(f"/{S.PAIRS}: human and robot clip have different tasks at pair {_examples(bad)}")
    if S.SPLIT in h:
        _check_split(h[S.SPLIT], f"/{S.SPLIT}", len(pairs), "pair", problems)


def _check_split(ds: object, where: str, n: int, unit: str, problems: list[str]) -> None:
    """A split array (/split per pair, /<domain>/clip_split per clip): uint8 [n] of 0 (train) / 1 (validation)."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iu" or ds.shape != (n,):
        what = "a group" if not isinstance(ds, h5py.Dataset) else f"dtype {ds.dtype} shape {list(ds.shape)}"
        problems.append(f"{where}: {what}, expected uint8 [{n}] (one per {unit})")
        return
    bad = np.flatnonzero(~np.isin(np.asarray(ds[()]), (S.SPLIT_TRAIN, S.SPLIT_VAL)))
    if bad.size:
        problems.append(f"{where}: values other than 0 (train) / 1 (validation) at {unit} {_examples(bad)}")


def _guard(problems: list[str], where: str, fn: Callable[[], object]) -> object:
    """Run one check; an exception while reading becomes a problem instead of a crash."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - validate must report, never crash, whatever the file holds
        problems.append(f"{where}: unreadable ({type(e).__name__}: {e})")
        return None


def validate(path: str | os.PathLike, deep: bool = False) -> list[str]:
    """Every problem of the pairs file ``path``, one line each; an empty list means valid.

    ``deep=True`` also reads every frame (streamed, 256 at a time) to find corrupt chunks; the
    default reads only the first and last frame of each domain.
    """
    p = Path(path)
    try:
        h = open_h5_readonly(p)
    except HRAlignError as e:
        return [str(e)]
    except Exception as e:  # noqa: BLE001 - see _guard
        return [f"{p}: cannot be opened ({type(e).__name__}: {e})"]
    problems: list[str] = []
    try:
        if not _guard(problems, "/", lambda: _check_attrs(h, problems)):
            return [f"{p}: {m}" for m in problems]  # another format: the rest would only be noise
        num_tasks = _guard(problems, f"/{S.TASKS}", lambda: _check_tasks(h, problems))
        clips: dict[str, int | None] = {}
        tasks: dict[str, np.ndarray | None] = {}
        present = {d: _guard(problems, f"/{d}", lambda d=d: d in h) for d in S.DOMAINS}
        for d in S.DOMAINS:
            if not present[d]:
                continue
            clips[d] = _guard(problems, f"/{d}", lambda d=d: _check_domain(h, d, num_tasks, problems, deep))  # type: ignore[assignment]
            tasks[d] = _guard(problems, f"/{d}/{S.CLIP_TASK}",
                              lambda d=d: np.asarray(h[d][S.CLIP_TASK][()], dtype=np.int64)) if clips[d] is not None else None
        if not any(present.values()):
            problems.append(f"/: no {' or '.join(S.DOMAINS)} group, expected clips in at least one domain")
        _guard(problems, f"/{S.PAIRS}", lambda: _check_pairs(h, clips, tasks, problems))
    except Exception as e:  # noqa: BLE001 - last guard: whatever the file holds, report it
        problems.append(f"/: unreadable ({type(e).__name__}: {e})")
    finally:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - closing a corrupt file may fail; nothing was written
            pass
    return [f"{p}: {m}" for m in problems]


def check_valid(path: str | os.PathLike) -> None:
    """Raise one-line :class:`HRAlignError` naming the first problem (and how many more) unless valid."""
    problems = validate(path)
    if problems:
        more = f" (and {len(problems) - 1} more; run `hralign pairs validate {path}`)" if len(problems) > 1 else ""
        raise HRAlignError(problems[0] + more)
