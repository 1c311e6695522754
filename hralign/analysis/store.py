"""latents.h5: the analysis' data (latents, clusters, 2-D maps, metadata), written atomically.

Layout::

    /                        attrs: hralign_format="latents", hralign_version=2, gap, tasks (JSON)
    /meta/{domain,clip,pair,task,t}   (n,) per latent: 0 human / 1 robot, clip, pair (-1 none), task, frame t
    /meta/actions            (n, A) float32, mean robot action over [t, t+gap) (NaN for human), optional
    /views/<view>/latents    (n, d) float32    view = "frozen" or "adapted"
    /views/<view>/codes      (n, tokens) int64, latent action models only
    /views/<view>/clusters   (n,) int64;  /views/<view>/centroids (k, d')
    /views/<view>/map2d      (n, 2) float32; attrs: map_method ("umap"|"pca"), and the cache keys
                             ``latents_key``, ``cluster_key``, ``map_key`` that let a re-run reuse them.

Version 2 (this one) stores every per-latent dataset chunked (``CHUNK_ROWS`` rows per HDF5 chunk)
and is written and read a chunk at a time (:class:`LatentsWriter`, :func:`open_latents`), so a
million-latent file never has to fit in memory; a file with another ``hralign_version`` is refused
with one line (re-run ``hralign analyze`` to rewrite it).

The cache keys are hashes of everything that determines a stage's result, so
``hralign analyze ... --overwrite`` re-renders instantly when only the report changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hralign.analysis.latents import LatentSet
from hralign.analysis.rows import Rows
from hralign.atomic import atomic_path
from hralign.errors import HRAlignError
from hralign.pairs import open_h5_readonly

FORMAT = "latents"
VERSION = 2
META = ("domain", "clip", "pair", "task", "t")
H5_CHUNK_ROWS = 4096  # rows per HDF5 chunk (8 MB of 512-d float32)


def cache_key(**parts) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class View:
    """One view of the analysis (frozen or adapted)."""

    latents: LatentSet
    clusters: np.ndarray | None = None
    centroids: np.ndarray | None = None
    map2d: np.ndarray | None = None
    map_method: str = ""
    keys: dict = field(default_factory=dict)  # latents_key / cluster_key / map_key


class LatentsWriter:
    """Writes the latents.h5 layout into an open, writable ``h5py.File``, dataset by dataset or
    chunk by chunk (``dataset`` returns a chunked dataset the caller fills in slices)."""

    def __init__(self, h: h5py.File, n: int, tasks: list[str], gap: int, attrs: dict | None = None) -> None:
        self.h, self.n = h, int(n)
        h.attrs["hralign_format"] = FORMAT
        h.attrs["hralign_version"] = VERSION
        h.attrs["gap"] = int(gap)
        h.attrs["tasks"] = json.dumps(list(tasks))
        for k, v in (attrs or {}).items():
            h.attrs[k] = json.dumps(v) if not isinstance(v, (str, int, float)) else v

    def dataset(self, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
        """A chunked dataset of ``shape`` (first axis: rows) to fill slice by slice."""
        chunks = (max(1, min(H5_CHUNK_ROWS, int(shape[0]))),) + tuple(int(s) for s in shape[1:]) if shape[0] else None
        return self.h.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)

    def write(self, name: str, data, dtype) -> None:
        """Copy ``data`` (ndarray, h5py.Dataset or :class:`Rows`) into ``name`` chunk by chunk."""
        rows = data if isinstance(data, Rows) else Rows(data) if np.ndim(data) == 2 else None
        if rows is None:  # 1-D metadata: small (8 bytes a row), written at once
            arr = np.asarray(data[()] if isinstance(data, h5py.Dataset) else data).astype(dtype)
            self.dataset(name, arr.shape, dtype)[...] = arr
            return
        ds = None
        for a, chunk in rows.chunks():
            if ds is None:
                ds = self.dataset(name, (len(rows), chunk.shape[1]), dtype)
            ds[a:a + len(chunk)] = chunk.astype(dtype)
        if ds is None:
            self.dataset(name, (0, int(data.shape[1])), dtype)

    def meta(self, ls: LatentSet) -> None:
        for name in META:
            self.write(f"meta/{name}", getattr(ls, name), getattr(ls, name).dtype)
        if ls.actions is not None:
            self.write("meta/actions", ls.actions, np.float32)

    def view(self, vname: str, v: "View") -> None:
        self.write(f"views/{vname}/latents", v.latents.latents, np.float32)
        g = self.h[f"views/{vname}"]
        if v.latents.codes is not None:
            self.write(f"views/{vname}/codes", v.latents.codes, np.int64)
        for name, data, dt in (("clusters", v.clusters, np.int64), ("centroids", v.centroids, np.float32),
                               ("map2d", v.map2d, np.float32)):
            if data is not None:
                self.write(f"views/{vname}/{name}", data, dt)
        g.attrs["map_method"] = v.map_method
        for k, val in v.keys.items():
            g.attrs[k] = val


def save_latents(path: str | os.PathLike, views: dict[str, View], tasks: list[str], attrs: dict | None = None) -> Path:
    """Write every view to ``path`` atomically, chunk by chunk (metadata from the first view; all share it).

    Latents may be arrays or open HDF5 datasets (a ``--latents`` input is copied without loading it).
    """
    if not views:
        raise HRAlignError("save_latents: no views to save")
    first = next(iter(views.values())).latents
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h:
            w = LatentsWriter(h, len(first), tasks, first.gap, attrs)
            w.meta(first)
            for vname, v in views.items():
                w.view(vname, v)
    return Path(path)


def _attr(v):
    return v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v


class LatentsFile:
    """An open latents.h5 (read-only): metadata, clusters and maps in memory; latents stay on disk
    as ``h5py.Dataset`` objects (``views[v].latents.latents``) read in chunks with :class:`Rows`.

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        self.path = p
        self.h = open_h5_readonly(p)
        try:
            h = self.h
            fmt = _attr(h.attrs.get("hralign_format"))
            if fmt != FORMAT:
                raise HRAlignError(f"{p}: attribute `hralign_format` is {fmt!r}, expected {FORMAT!r} (a latents.h5 "
                                   "written by `hralign analyze`)")
            version = _attr(h.attrs.get("hralign_version"))
            if version != VERSION:
                raise HRAlignError(f"{p}: attribute `hralign_version` is {version!r}, expected {VERSION} (written by "
                                   "another hralign version; re-run `hralign analyze` to rewrite it)")
            self.gap = int(h.attrs["gap"])
            self.tasks = json.loads(_attr(h.attrs["tasks"]))
            self.attrs = {k: _attr(v) for k, v in h.attrs.items()}
            meta = {k: h[f"meta/{k}"][()] for k in META}
            actions = h["meta/actions"][()] if "meta/actions" in h else None
            self.views: dict[str, View] = {}
            if "views" not in h or not len(h["views"]):
                raise HRAlignError(f"{p}: has no /views/<view>/latents dataset")
            for vname, g in h["views"].items():
                lat = g["latents"]
                if lat.ndim != 2 or lat.shape[0] != meta["domain"].shape[0]:
                    raise HRAlignError(f"{p}: /views/{vname}/latents has shape {list(lat.shape)}, expected "
                                       f"[{meta['domain'].shape[0]}, D] (one row per /meta row)")
                ls = LatentSet(latents=lat, gap=self.gap, actions=actions,
                               codes=g["codes"][()] if "codes" in g else None, **meta)
                self.views[vname] = View(
                    latents=ls,
                    clusters=g["clusters"][()] if "clusters" in g else None,
                    centroids=g["centroids"][()] if "centroids" in g else None,
                    map2d=g["map2d"][()] if "map2d" in g else None,
                    map_method=str(_attr(g.attrs.get("map_method", ""))),
                    keys={k: str(_attr(g.attrs[k])) for k in ("latents_key", "cluster_key", "map_key") if k in g.attrs},
                )
        except HRAlignError:
            self.h.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as e:
            self.h.close()
            raise HRAlignError(f"{p}: not a readable latents.h5 ({e})") from e

    def close(self) -> None:
        self.h.close()

    def __enter__(self) -> "LatentsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_latents(path: str | os.PathLike) -> LatentsFile:
    """Open a latents.h5 for chunked reading (checks format and version; one-line errors)."""
    return LatentsFile(path)


def load_latents(path: str | os.PathLike) -> tuple[dict[str, View], list[str], dict]:
    """Read a latents.h5 back entirely into memory: (views, tasks, root attrs). Small files only."""
    with open_latents(path) as f:
        for v in f.views.values():
            v.latents.latents = Rows(v.latents.latents).all()
        return f.views, f.tasks, f.attrs
