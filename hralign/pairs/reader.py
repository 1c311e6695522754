"""Lazy reader for pairs files.

The small index arrays (clip starts, lengths, tasks, pairs) are read once; frames are read by
slice on demand. The HDF5 handle is opened per process, so a ``PairsFile`` handed to DataLoader
workers opens its own handle in each worker (h5py handles must not cross ``fork``).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc filter, which h5py needs to read blosc-compressed frames
import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S


def open_h5_readonly(path: str | os.PathLike) -> h5py.File:
    """Open ``path`` read-only as HDF5, turning every failure into one clear :class:`HRAlignError`."""
    p = Path(path)
    if not p.exists():
        raise HRAlignError(f"{p}: file not found")
    if p.is_dir():
        raise HRAlignError(f"{p}: is a directory, expected an HDF5 pairs file")
    if p.stat().st_size == 0:
        raise HRAlignError(f"{p}: file is empty, expected an HDF5 pairs file")
    try:
        if not h5py.is_hdf5(p):
            raise HRAlignError(f"{p}: not an HDF5 file (no HDF5 signature); expected an hralign pairs file")
        return h5py.File(p, "r")
    except HRAlignError:
        raise
    except (OSError, RuntimeError) as e:
        raise HRAlignError(f"{p}: cannot be read as HDF5 ({e}); the file may be truncated or corrupt") from e


def _raw_frame_chunks(ds: h5py.Dataset) -> bool:
    """Whether ``ds`` stores one uncompressed, unfiltered uint8 frame per chunk (PairsWriter's default)."""
    return (ds.chunks is not None and ds.chunks[0] == 1 and ds.chunks[1:] == ds.shape[1:] and ds.dtype == np.uint8
            and ds.id.get_create_plist().get_nfilters() == 0)


def _read_rows(ds: h5py.Dataset, rows: list[int],
               layout: tuple[bool, tuple[int, ...], np.dtype]) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of a frame-chunked dataset, one chunk read per row, into one
    preallocated array (no per-row arrays to stack).

    ``layout`` is (direct, row shape, dtype) of ``ds``, looked up once per handle (h5py's
    ``shape``/``ndim``/``dtype`` properties cost, in cProfile, about as much as reading a small
    frame). ``direct`` (see :func:`_raw_frame_chunks`): read each chunk's bytes with
    ``read_direct_chunk``, which skips h5py's selection machinery (about 2x faster per frame,
    benchmarks/pairs_read.py).
    Compressed chunks go through h5py's one-row read, HDF5's filter pipeline decoding them; for a
    few rows it beats one read of a multi-row selection (HDF5's irregular hyperslab unions, which
    h5py fancy indexing builds, were 15-50x slower for 5 of 8 frames here) and the covering
    slice (which decodes chunks nobody asked for).
    """
    direct, shape, dtype = layout
    out = np.empty((len(rows), *shape), dtype=dtype)
    if direct:
        zeros = (0,) * len(shape)
        try:
            for j, r in enumerate(rows):
                out[j] = np.frombuffer(ds.id.read_direct_chunk((r, *zeros))[1], dtype=np.uint8).reshape(shape)
            return out
        except (OSError, KeyError, ValueError, RuntimeError):
            pass  # e.g. an unallocated chunk: let h5py handle it
    for j, r in enumerate(rows):
        out[j] = ds[r]
    return out


class PairsFile:
    """Read-only access to a pairs file (docs/design.md, "Pairs file").

    Parameters
    ----------
    path : str or Path
        The pairs file. The format attribute and the index datasets are checked on open; run
        :func:`hralign.pairs.validate` for the full list of problems.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._datasets: dict[tuple[str, str], h5py.Dataset] = {}  # name lookups cost ~100 us each in h5py
        self._layout: dict[tuple[str, str], tuple] = {}  # property lookups (chunks, filters, shape) are slow too
        h = self._handle()
        fmt = h.attrs.get(S.FORMAT_ATTR)
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != S.FORMAT_NAME:
            raise HRAlignError(f"{self.path}: attribute `{S.FORMAT_ATTR}` is {fmt!r}, expected {S.FORMAT_NAME!r} "
                               "(not an hralign pairs file)")
        version = h.attrs.get(S.VERSION_ATTR)
        if version is None or int(version) != S.FORMAT_VERSION:
            raise HRAlignError(f"{self.path}: attribute `{S.VERSION_ATTR}` is {version!r}, expected {S.FORMAT_VERSION}")
        try:
            self.tasks: list[str] = [t.decode() if isinstance(t, bytes) else str(t) for t in h[S.TASKS][()]] if S.TASKS in h else []
            self.pairs: np.ndarray = np.asarray(h[S.PAIRS][()], dtype=np.int64).reshape(-1, 2) if S.PAIRS in h else np.zeros((0, 2), np.int64)
            self.split: np.ndarray | None = np.asarray(h[S.SPLIT][()], dtype=np.uint8) if S.SPLIT in h else None
            self._index: dict[str, dict[str, np.ndarray]] = {}
            for d in S.DOMAINS:
                if d in h and S.FRAMES in h[d]:
                    self._index[d] = {k: np.asarray(h[d][k][()], dtype=np.int64) for k in S.CLIP_INDEX}
            # optional per-frame arrays present, listed once (the file is read-only)
            self._present = {d: {n for n in S.PER_FRAME_OPTIONAL if n in h[d]} for d in self._index}
            self._clip_split = {d: np.asarray(h[d][S.CLIP_SPLIT][()], dtype=np.uint8) for d in self._index
                                if S.CLIP_SPLIT in h[d]}
        except KeyError as e:
            raise HRAlignError(f"{self.path}: missing dataset {e}; run `hralign pairs validate {self.path}`") from e
        except (OSError, ValueError, TypeError) as e:
            raise HRAlignError(f"{self.path}: unreadable index datasets ({e}); run `hralign pairs validate {self.path}`") from e

    # -- handle management ----------------------------------------------------------------------
    def _handle(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = open_h5_readonly(self.path)
            self._pid = os.getpid()
            self._datasets = {}
            self._layout = {}
        return self._h5

    def close(self) -> None:
        """Close the handle of this process (it reopens on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._datasets = {}
        self._layout = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"] = None  # each worker process opens its own handle
        state["_datasets"] = {}
        state["_layout"] = {}
        state["_pid"] = None
        return state

    def __enter__(self) -> "PairsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _dataset(self, domain: str, name: str) -> h5py.Dataset:
        """The h5py dataset ``/domain/name`` of this process's handle (cached; checked input)."""
        h = self._handle()
        key = (domain, name)
        ds = self._datasets.get(key)
        if ds is None:
            ds = self._datasets[key] = h[domain][name]
        return ds

    # -- counts and metadata --------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        """Domains that have clips, in ("human", "robot") order."""
        return tuple(d for d in S.DOMAINS if d in self._index and len(self._index[d][S.CLIP_START]) > 0)

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def num_clips(self, domain: str) -> int:
        return int(len(self._index[domain][S.CLIP_START])) if domain in self._index else 0

    def num_frames(self, domain: str) -> int:
        return int(self._dataset(domain, S.FRAMES).shape[0]) if domain in self._index else 0

    def frame_shape(self, domain: str) -> tuple[int, int, int]:
        """(H, W, 3) of ``domain``'s frames."""
        self._check_domain(domain)
        return tuple(int(x) for x in self._dataset(domain, S.FRAMES).shape[1:])  # type: ignore[return-value]

    def clip_starts(self, domain: str) -> np.ndarray:
        self._check_domain(domain)
        return self._index[domain][S.CLIP_START]

    def clip_lengths(self, domain: str) -> np.ndarray:
        self._check_domain(domain)
        return self._index[domain][S.CLIP_LENGTH]

    def clip_tasks(self, domain: str) -> np.ndarray:
        self._check_domain(domain)
        return self._index[domain][S.CLIP_TASK]

    def clip_split(self, domain: str) -> np.ndarray | None:
        """The optional per-clip split of ``domain`` (uint8 [C], 0 train / 1 validation), or None.

        Written by ``hralign pairs import`` so that files without pairs (a human video set, a
        robomimic file with its masks) keep the source's split.
        """
        self._check_domain(domain)
        return self._clip_split.get(domain)

    def has(self, domain: str, name: str) -> bool:
        """Whether ``domain`` stores the optional per-frame dataset ``name`` ("actions" or "state")."""
        return domain in self._index and name in self._present[domain]

    # -- data access ----------------------------------------------------------------------------
    def read_clip(self, domain: str, clip: int, frames: slice | np.ndarray | list[int] | None = None,
                  name: str = S.FRAMES) -> np.ndarray:
        """Frames (uint8 [T, H, W, 3]) or per-frame ``name`` ("actions"/"state") of one clip.

        ``frames`` selects within the clip: a slice or a 1-D list of indices, sorted or not, with
        repeats or not (each distinct frame is read once; a contiguous run as one slice, which is
        what HDF5 does fastest; sparse ones frame by frame, so a few frames of a long clip cost a
        few frames).
        """
        try:
            return self._read_clip(domain, clip, frames, name)
        except OSError as e:  # HDF5 reports a corrupt chunk as "Can't synchronously read data (filter returned ...)"
            raise HRAlignError(f"{self.path}: cannot read /{domain}/{name} of {domain} clip {clip} ({e}); the file is "
                               "corrupt (`hralign pairs validate --deep` lists every bad chunk)") from e

    def _read_clip(self, domain: str, clip: int, frames: slice | np.ndarray | list[int] | None, name: str) -> np.ndarray:
        self._check_clip(domain, clip)
        if name != S.FRAMES and not self.has(domain, name):
            raise HRAlignError(f"{self.path}: /{domain}/{name} does not exist")
        start = int(self._index[domain][S.CLIP_START][clip])
        length = int(self._index[domain][S.CLIP_LENGTH][clip])
        ds = self._dataset(domain, name)
        if frames is None:
            return ds[start:start + length]
        if isinstance(frames, slice):
            lo, hi, step = frames.indices(length)
            return ds[start + lo:start + hi][::step]
        idx = np.asarray(frames, dtype=np.int64)
        if idx.ndim != 1:
            raise HRAlignError(f"{domain} clip {clip}: `frames` should be a 1-D list of indices but has shape {idx.shape}")
        # T is a handful of indices per call (adapt reads 5 per clip, once per clip and step): on a
        # few elements Python list operations cost well under a microsecond where each numpy
        # reduction or np.unique costs several: on small frames a large share of the read (cProfile).
        want = idx.tolist()
        if not want:
            return ds[start:start][:0]
        lo, hi = want[0], want[-1] + 1
        if hi - lo == len(want) and want == list(range(lo, hi)):  # a run i..j (whole clips): one slice read
            if lo < 0 or hi > length:
                raise HRAlignError(f"{domain} clip {clip}: frame indices {lo}..{hi - 1} outside 0..{length - 1}")
            return ds[start + lo:start + hi]
        lo, hi = min(want), max(want) + 1
        if lo < 0 or hi > length:
            raise HRAlignError(f"{domain} clip {clip}: frame indices {lo}..{hi - 1} outside 0..{length - 1}")
        if name != S.FRAMES:  # small rows: one slice read
            return ds[start + lo:start + hi][idx - lo]
        distinct = all(a < b for a, b in zip(want, want[1:]))  # sorted, no repeats (as adapt mostly samples)
        uniq = want if distinct else sorted(set(want))
        if hi - lo == len(uniq):  # a contiguous run with repeats or out of order: one slice read
            rows = ds[start + lo:start + hi]
        else:  # sparse: chunk by chunk, so a few frames of a long clip cost a few frames
            key = (domain, name)
            layout = self._layout.get(key)
            if layout is None:
                layout = self._layout[key] = (_raw_frame_chunks(ds), ds.shape[1:], ds.dtype)
            rows = _read_rows(ds, [start + r for r in uniq], layout)
        if distinct:
            return rows
        where = {r: j for j, r in enumerate(uniq)}
        return rows[[where[r] for r in want]]

    def read_frames(self, domain: str, start: int, stop: int) -> np.ndarray:
        """A raw slice of ``domain``'s frames dataset (uint8 [stop-start, H, W, 3])."""
        self._check_domain(domain)
        return self._dataset(domain, S.FRAMES)[start:stop]

    def instruction(self, task: int) -> str:
        return self.tasks[int(task)]

    def pair_split(self) -> np.ndarray | None:
        """The stored split per pair (0 train, 1 validation), or None when the file has none."""
        return self.split

    # -- checks (user input) --------------------------------------------------------------------
    def _check_domain(self, domain: str) -> None:
        if domain not in S.DOMAINS:
            raise HRAlignError(f"`domain` should be one of {S.DOMAINS} but the value passed is {domain!r}")
        if domain not in self._index:
            raise HRAlignError(f"{self.path}: has no {domain} clips")

    def _check_clip(self, domain: str, clip: int) -> None:
        self._check_domain(domain)
        n = self.num_clips(domain)
        if not 0 <= int(clip) < n:
            raise HRAlignError(f"{self.path}: {domain} clip {clip} out of range (0..{n - 1})")

    def __repr__(self) -> str:
        counts = ", ".join(f"{d}={self.num_clips(d)} clips" for d in self.domains)
        return f"PairsFile({str(self.path)!r}, tasks={self.num_tasks}, pairs={self.num_pairs}, {counts})"
