"""Streaming writer for the pairs HDF5 format.

Clips are appended one at a time to resizable, frame-chunked datasets, so a writer never holds
more than one clip in memory. The file is written under a temporary name and renamed on
``close()``; an exception inside ``with PairsWriter(...)`` removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S


def check_compression(compression: str | None) -> str | None:
    """The frame filter a config names: one of ``S.COMPRESSIONS``, with the string "none" read as None."""
    if isinstance(compression, str) and compression.lower() == "none":
        return None
    if compression not in S.COMPRESSIONS:
        raise HRAlignError(f"`compression` should be one of none, gzip, lzf, blosc but the value passed is {compression!r}")
    return compression


def check_not_an_input(out: str | os.PathLike, inputs: list[str | os.PathLike]) -> None:
    """Refuse an output that is (resolves to, or is a hard link of) one of the inputs.

    With ``--overwrite`` the finished output would replace a file the command reads, and whatever
    the output leaves out of it (unmatched clips) would be gone for good.
    """
    target = Path(out)
    for p in inputs:
        same = Path(p).resolve() == target.resolve()
        if not same and target.exists() and Path(p).exists():
            same = os.path.samefile(p, target)
        if same:
            raise HRAlignError(f"{out}: is also an input ({p}); write the output to a new file")


def frame_filter(compression: str | None) -> dict:
    """h5py ``create_dataset`` keyword arguments for a frame filter (None, gzip, lzf or blosc).

    blosc is hdf5plugin's Blosc filter with zstd level 3 and bit shuffle (of the Blosc codecs, the one
    that both shrinks decoded video frames and reads fast: benchmarks/import_scale.py); readers import
    ``hdf5plugin`` to decode it.
    """
    compression = check_compression(compression)
    if compression == "blosc":
        import hdf5plugin

        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    return {} if compression is None else {"compression": compression}


class PairsWriter:
    """Write a pairs file clip by clip.

    Parameters
    ----------
    path : str or Path
        Final file name; nothing appears under it until :meth:`close` succeeds.
    tasks : list of str, optional
        Instructions known up front; more can be added with :meth:`add_task`.
    compression : {None, "gzip", "lzf", "blosc"}
        HDF5 filter for frames (chunks are one frame, so reads by slice stay cheap).
    overwrite : bool
        Replace an existing file at ``path`` (default: refuse).
    """

    def __init__(self, path: str | os.PathLike, tasks: list[str] | None = None,
                 compression: str | None = None, overwrite: bool = False) -> None:
        frame_filter(compression)  # checks the name
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise HRAlignError(f"{self.path}: output exists; pass overwrite=True (CLI: --overwrite) to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._h5 = h5py.File(self._tmp, "w")
        self._compression = compression
        self._tasks: list[str] = []
        self._task_ids: dict[str, int] = {}
        self._clips: dict[str, dict[str, list[int]]] = {d: {k: [] for k in S.CLIP_INDEX} for d in S.DOMAINS}
        self._n_frames = {d: 0 for d in S.DOMAINS}
        self._pairs: list[tuple[int, int]] = []
        self._split: list[int | None] = []
        self._clip_split: dict[str, list[int | None]] = {d: [] for d in S.DOMAINS}
        self._closed = False
        for t in tasks or []:
            self.add_task(t)

    @property
    def tasks(self) -> list[str]:
        """Instructions registered so far (index = task id)."""
        return list(self._tasks)

    def num_clips(self, domain: str) -> int:
        """Clips of ``domain`` added so far."""
        return len(self._clips[domain][S.CLIP_START])

    def num_frames(self, domain: str) -> int:
        """Frames of ``domain`` added so far."""
        return self._n_frames[domain]

    @property
    def num_pairs(self) -> int:
        """Pairs added so far."""
        return len(self._pairs)

    # -- building -----------------------------------------------------------------------------
    def add_task(self, instruction: str) -> int:
        """Register an instruction (idempotent) and return its task index."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise HRAlignError(f"task instruction should be a non-empty string but the value passed is {instruction!r}")
        if instruction not in self._task_ids:
            self._task_ids[instruction] = len(self._tasks)
            self._tasks.append(instruction)
        return self._task_ids[instruction]

    def add_clip(self, domain: str, frames: np.ndarray, task: int | str,
                 actions: np.ndarray | None = None, state: np.ndarray | None = None, split: int | None = None) -> int:
        """Append one clip to ``domain`` and return its clip index.

        ``frames`` is uint8 of shape (T, H, W, 3); ``actions``/``state`` are per frame, (T, A)/(T, S).
        All clips of a domain share H, W (and A, S). ``split`` (0 train, 1 validation) fills the
        optional per-clip ``/<domain>/clip_split``: give it for every clip of a domain or for none.
        """
        self._check_open()
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise HRAlignError(f"{domain} clip frames should be uint8 [T, H, W, 3] but got {frames.dtype} {list(frames.shape)}")
        task_id, g = self._check_clip(domain, frames.shape[0], task, split)
        self._append(g, S.FRAMES, frames, chunk_rows=1, compression=self._compression)
        return self._finish_clip(domain, g, frames.shape[0], task_id, actions, state, split)

    def add_clip_chunks(self, domain: str, frames: h5py.Dataset, task: int | str, actions: np.ndarray | None = None,
                        state: np.ndarray | None = None, split: int | None = None) -> int:
        """Like :meth:`add_clip`, from an HDF5 dataset chunked one frame per chunk with this writer's filter.

        The compressed chunks are copied as they are (``read_direct_chunk``/``write_direct_chunk``),
        so a clip compressed once, in a worker process, is never decompressed and recompressed here.
        """
        self._check_open()
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise HRAlignError(f"{domain} clip frames should be uint8 [T, H, W, 3] but got {frames.dtype} {list(frames.shape)}")
        task_id, g = self._check_clip(domain, frames.shape[0], task, split)
        if frames.chunks != (1, *frames.shape[1:]) or _filters(frames) != _filters_of(self._compression):
            raise HRAlignError(f"{frames.file.filename}: frames are chunked {frames.chunks} with filters {_filters(frames)}, "
                               f"expected one frame per chunk with {self._compression!r}")
        t = frames.shape[0]
        if S.FRAMES not in g:
            g.create_dataset(S.FRAMES, shape=(0, *frames.shape[1:]), maxshape=(None, *frames.shape[1:]), dtype=np.uint8,
                             chunks=(1, *frames.shape[1:]), track_times=False, **frame_filter(self._compression))
        ds = g[S.FRAMES]
        if ds.shape[1:] != frames.shape[1:]:
            raise HRAlignError(f"{g.name}/{S.FRAMES}: every clip must have shape [T, {', '.join(map(str, ds.shape[1:]))}] "
                               f"but this one has {list(frames.shape)}")
        n = ds.shape[0]
        ds.resize(n + t, axis=0)
        zeros = (0,) * (frames.ndim - 1)
        for i in range(t):
            mask, chunk = frames.id.read_direct_chunk((i, *zeros))
            ds.id.write_direct_chunk((n + i, *zeros), chunk, mask)
        return self._finish_clip(domain, g, t, task_id, actions, state, split)

    def _check_clip(self, domain: str, t: int, task: int | str, split: int | None) -> tuple[int, h5py.Group]:
        if domain not in S.DOMAINS:
            raise HRAlignError(f"`domain` should be one of {S.DOMAINS} but the value passed is {domain!r}")
        if t == 0:
            raise HRAlignError(f"{domain} clip has no frames; clips need at least 1 frame")
        if split not in (None, S.SPLIT_TRAIN, S.SPLIT_VAL):
            raise HRAlignError(f"`split` should be None, 0 (train) or 1 (validation) but the value passed is {split!r}")
        task_id = self.add_task(task) if isinstance(task, str) else int(task)
        if not 0 <= task_id < len(self._tasks):
            raise HRAlignError(f"{domain} clip task {task_id} is out of range; {len(self._tasks)} tasks are registered")
        return task_id, self._h5.require_group(domain)

    def _finish_clip(self, domain: str, g: h5py.Group, t: int, task_id: int, actions: np.ndarray | None,
                     state: np.ndarray | None, split: int | None) -> int:
        for name, arr in ((S.ACTIONS, actions), (S.STATE, state)):
            if arr is None:
                if name in g:
                    raise HRAlignError(f"{domain} clip {len(self._clips[domain][S.CLIP_START])} has no {name} but earlier clips do")
                continue
            if name not in g and self._n_frames[domain] > 0:
                raise HRAlignError(f"{domain} clip has {name} but earlier clips of {domain} do not")
            arr = np.asarray(arr, dtype=np.float32)
            if arr.ndim != 2 or arr.shape[0] != t:
                raise HRAlignError(f"{domain} {name} should be float [T={t}, D] but got shape {list(arr.shape)}")
            self._append(g, name, arr, chunk_rows=1024, compression=None)
        idx = self._clips[domain]
        idx[S.CLIP_START].append(self._n_frames[domain])
        idx[S.CLIP_LENGTH].append(t)
        idx[S.CLIP_TASK].append(task_id)
        self._clip_split[domain].append(None if split is None else int(split))
        self._n_frames[domain] += t
        return len(idx[S.CLIP_START]) - 1

    def add_pair(self, human_clip: int, robot_clip: int, split: int | None = None) -> int:
        """Pair a human clip with a robot clip (optionally 0 = train, 1 = validation)."""
        self._check_open()
        for domain, c in (("human", human_clip), ("robot", robot_clip)):
            n = len(self._clips[domain][S.CLIP_START])
            if not 0 <= int(c) < n:
                raise HRAlignError(f"pair refers to {domain} clip {c} but only {n} {domain} clips were added")
        if split not in (None, S.SPLIT_TRAIN, S.SPLIT_VAL):
            raise HRAlignError(f"`split` should be None, 0 (train) or 1 (validation) but the value passed is {split!r}")
        self._pairs.append((int(human_clip), int(robot_clip)))
        self._split.append(split)
        return len(self._pairs) - 1

    def set_attr(self, name: str, value: str | int | float) -> None:
        """Store a root attribute (provenance such as the synth config); format attributes are reserved."""
        self._check_open()
        if name in (S.FORMAT_ATTR, S.VERSION_ATTR):
            raise HRAlignError(f"root attribute `{name}` is reserved for the format and is written on close")
        self._h5.attrs[name] = value

    # -- finishing ----------------------------------------------------------------------------
    def close(self, before_rename=None) -> Path:
        """Write the index datasets and attributes, then rename into place. Returns the path.

        ``before_rename(tmp)``, if given, is called with the finished temporary file just before the
        rename (the import pipeline records the file's identity there, so a resume can tell that the
        rename happened); if it raises, the temporary file is removed and nothing is renamed.
        """
        if self._closed:
            return self.path
        h = self._h5
        try:
            h.attrs[S.FORMAT_ATTR] = S.FORMAT_NAME
            h.attrs[S.VERSION_ATTR] = S.FORMAT_VERSION
            h.create_dataset(S.TASKS, data=np.array(self._tasks, dtype=object), dtype=h5py.string_dtype("utf-8"),
                             track_times=False)
            for domain in S.DOMAINS:
                idx = self._clips[domain]
                if not idx[S.CLIP_START]:
                    continue
                g = h.require_group(domain)
                for name in S.CLIP_INDEX:
                    g.create_dataset(name, data=np.asarray(idx[name], dtype=np.int64), track_times=False)
                cs = self._clip_split[domain]
                if any(s is not None for s in cs):
                    if any(s is None for s in cs):
                        raise HRAlignError(f"either every {domain} clip has a split or none has; some were added without one")
                    g.create_dataset(S.CLIP_SPLIT, data=np.asarray(cs, dtype=np.uint8), track_times=False)
            h.create_dataset(S.PAIRS, data=np.asarray(self._pairs, dtype=np.int64).reshape(-1, 2), track_times=False)
            if any(s is not None for s in self._split):
                if any(s is None for s in self._split):
                    raise HRAlignError("either every pair has a split or none has; some pairs were added without one")
                h.create_dataset(S.SPLIT, data=np.asarray(self._split, dtype=np.uint8), track_times=False)
            h.close()
            # mkstemp made the temporary file 0600; give the output the mode a plain open() would (as hralign.atomic does)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self._tmp, 0o666 & ~mask)
            if before_rename is not None:
                before_rename(self._tmp)
        except BaseException:
            self.abort()
            raise
        os.replace(self._tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the final path is untouched."""
        if self._closed:
            return
        try:
            self._h5.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file goes regardless
            pass
        self._tmp.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> "PairsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # an unclosed writer must not leave its temp file behind
        if not getattr(self, "_closed", True):
            self.abort()

    # -- helpers (checked input) --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise HRAlignError(f"{self.path}: writer is closed")

    def _append(self, group: h5py.Group, name: str, arr: np.ndarray, chunk_rows: int, compression: str | None) -> None:
        if name not in group:
            group.create_dataset(name, data=arr, maxshape=(None, *arr.shape[1:]),
                                 chunks=(min(chunk_rows, max(1, arr.shape[0])) if chunk_rows > 1 else 1, *arr.shape[1:]),
                                 track_times=False, **frame_filter(compression))
            return
        ds = group[name]
        if ds.shape[1:] != arr.shape[1:]:
            raise HRAlignError(f"{group.name}/{name}: every clip must have shape [T, {', '.join(map(str, ds.shape[1:]))}] "
                               f"but this one has {list(arr.shape)}")
        n = ds.shape[0]
        ds.resize(n + arr.shape[0], axis=0)
        ds[n:] = arr


def _filters(ds: h5py.Dataset) -> tuple[int, ...]:
    """The HDF5 filter ids of a dataset's pipeline."""
    plist = ds.id.get_create_plist()
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))


def _filters_of(compression: str | None) -> tuple[int, ...]:
    """The filter ids ``frame_filter(compression)`` produces (gzip=1, lzf=32000, blosc=32001)."""
    ids = {None: (), "gzip": (h5py.h5z.FILTER_DEFLATE,), "lzf": (32000,), "blosc": (32001,)}
    return ids[compression]
