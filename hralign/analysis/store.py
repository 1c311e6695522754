"""latents.h5: the analysis' data (latents, clusters, 2-D maps, metadata), written atomically.

Layout::

    /                        attrs: hralign_format="latents", hralign_version=1, gap, tasks (JSON)
    /meta/{domain,clip,pair,task,t}   (n,) per latent: 0 human / 1 robot, clip, pair (-1 none), task, frame t
    /meta/actions            (n, A) float32, mean robot action over [t, t+gap) (NaN for human), optional
    /views/<view>/latents    (n, d) float32    view = "frozen" or "adapted"
    /views/<view>/codes      (n, tokens) int64, latent action models only
    /views/<view>/clusters   (n,) int64;  /views/<view>/centroids (k, d')
    /views/<view>/map2d      (n, 2) float32; attrs: map_method ("umap"|"pca"), and the cache keys
                             ``latents_key``, ``cluster_key``, ``map_key`` that let a re-run reuse them.

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
from hralign.atomic import atomic_path
from hralign.errors import HRAlignError

FORMAT = "latents"
VERSION = 1
META = ("domain", "clip", "pair", "task", "t")


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


def save_latents(path: str | os.PathLike, views: dict[str, View], tasks: list[str], attrs: dict | None = None) -> Path:
    """Write every view to ``path`` atomically (metadata from the first view; all share it)."""
    if not views:
        raise HRAlignError("save_latents: no views to save")
    first = next(iter(views.values())).latents
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h:
            h.attrs["hralign_format"] = FORMAT
            h.attrs["hralign_version"] = VERSION
            h.attrs["gap"] = int(first.gap)
            h.attrs["tasks"] = json.dumps(list(tasks))
            for k, v in (attrs or {}).items():
                h.attrs[k] = json.dumps(v) if not isinstance(v, (str, int, float)) else v
            for name in META:
                h.create_dataset(f"meta/{name}", data=getattr(first, name))
            if first.actions is not None:
                h.create_dataset("meta/actions", data=first.actions)
            for vname, v in views.items():
                g = h.create_group(f"views/{vname}")
                g.create_dataset("latents", data=v.latents.latents.astype(np.float32))
                if v.latents.codes is not None:
                    g.create_dataset("codes", data=v.latents.codes)
                if v.clusters is not None:
                    g.create_dataset("clusters", data=v.clusters.astype(np.int64))
                if v.centroids is not None:
                    g.create_dataset("centroids", data=v.centroids.astype(np.float32))
                if v.map2d is not None:
                    g.create_dataset("map2d", data=v.map2d.astype(np.float32))
                g.attrs["map_method"] = v.map_method
                for k, val in v.keys.items():
                    g.attrs[k] = val
    return Path(path)


def load_latents(path: str | os.PathLike) -> tuple[dict[str, View], list[str], dict]:
    """Read a latents.h5 back: (views, tasks, root attrs)."""
    p = Path(path)
    if not p.is_file():
        raise HRAlignError(f"{p}: file not found")
    try:
        with h5py.File(p, "r") as h:
            if h.attrs.get("hralign_format") != FORMAT:
                raise HRAlignError(f"{p}: attribute `hralign_format` is {h.attrs.get('hralign_format')!r}, expected {FORMAT!r}")
            gap = int(h.attrs["gap"])
            tasks = json.loads(h.attrs["tasks"])
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h.attrs.items()}
            meta = {k: h[f"meta/{k}"][()] for k in META}
            actions = h["meta/actions"][()] if "meta/actions" in h else None
            views = {}
            for vname, g in h["views"].items():
                ls = LatentSet(latents=g["latents"][()], gap=gap, actions=actions,
                               codes=g["codes"][()] if "codes" in g else None, **meta)
                views[vname] = View(
                    latents=ls,
                    clusters=g["clusters"][()] if "clusters" in g else None,
                    centroids=g["centroids"][()] if "centroids" in g else None,
                    map2d=g["map2d"][()] if "map2d" in g else None,
                    map_method=str(g.attrs.get("map_method", "")),
                    keys={k: str(g.attrs[k]) for k in ("latents_key", "cluster_key", "map_key") if k in g.attrs},
                )
    except (OSError, KeyError) as e:
        raise HRAlignError(f"{p}: not a readable latents.h5 ({e})") from e
    return views, tasks, attrs
