"""PNG figures of the analysis: 2-D maps coloured by embodiment / task / cluster, cluster galleries.

Every map figure has one panel per view (frozen, adapted) side by side, same colours, so the
before/after comparison is one glance. Figures are built with matplotlib's object-oriented API
(``matplotlib.figure.Figure``, no pyplot), so saving a PNG needs no display and importing this
module leaves the user's matplotlib backend alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from hralign.analysis.store import View
from hralign.atomic import atomic_path

DOMAIN_COLORS = ("#1f77b4", "#ff7f0e")  # human blue, robot orange
DOMAIN_NAMES = ("human", "robot")


def palette(n: int) -> np.ndarray:
    """n distinct RGBA colours (tab10/tab20, then evenly spaced hues)."""
    if n <= 10:
        return matplotlib.colormaps["tab10"](np.arange(n))
    if n <= 20:
        return matplotlib.colormaps["tab20"](np.arange(n))
    return matplotlib.colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def map_figure(path: str | os.PathLike, views: dict[str, View], color_by: str, tasks: list[str]) -> Path:
    """One scatter panel per view of the 2-D map, coloured by "embodiment", "task" or "cluster"."""
    names = [n for n, v in views.items() if v.map2d is not None]
    fig = Figure(figsize=(5.2 * len(names), 4.8))
    axes = fig.subplots(1, len(names), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes[0], names):
        v = views[name]
        xy, ls = v.map2d, v.latents
        order = rng.permutation(len(xy))  # draw in random order so no group hides another
        if color_by == "embodiment":
            for d in (0, 1):
                m = ls.domain[order] == d
                if m.any():
                    ax.scatter(xy[order][m, 0], xy[order][m, 1], s=6, c=DOMAIN_COLORS[d], alpha=0.6,
                               label=DOMAIN_NAMES[d], linewidths=0)
            ax.legend(loc="best", fontsize=8, markerscale=2)
        elif color_by == "task":
            cols = palette(max(len(tasks), int(ls.task.max()) + 1))
            ax.scatter(xy[order, 0], xy[order, 1], s=6, c=cols[ls.task[order]], alpha=0.7, linewidths=0)
            for t in np.unique(ls.task):
                ax.scatter([], [], c=[cols[t]], s=20, label=(tasks[t] if t < len(tasks) else str(t))[:40])
            ax.legend(loc="best", fontsize=6, markerscale=1)
        else:
            k = int(v.clusters.max()) + 1
            cols = palette(k)
            ax.scatter(xy[order, 0], xy[order, 1], s=6, c=cols[v.clusters[order]], alpha=0.7, linewidths=0)
        ax.set_title(f"{name}: {v.map_method.upper()} by {color_by}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def _thumb(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def gallery_figure(path: str | os.PathLike, view: View, space: np.ndarray,
                   read_pair: Callable[[int, int, int], tuple[np.ndarray, np.ndarray]], title: str,
                   max_clusters: int = 12, per_domain: int = 3, thumb: int = 48) -> Path:
    """Per cluster a strip of frame pairs x_t -> x_{t+gap}: the members nearest the centroid,
    ``per_domain`` human ones then ``per_domain`` robot ones. Largest clusters first.

    ``read_pair(domain, clip, t)`` returns the (before, after) uint8 frames; ``space`` is the
    (n, d) array the clusters were computed in.
    """
    ls, labels = view.latents, view.clusters
    sizes = np.bincount(labels)
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0][:max_clusters]
    pad = np.full((thumb, 6, 3), 255, np.uint8)
    blank = np.full((thumb, 2 * thumb + 2, 3), 235, np.uint8)
    arrow = np.full((thumb, 2, 3), 255, np.uint8)
    rows, captions = [], []
    for c in order:
        members = np.where(labels == c)[0]
        centre = space[members].mean(0)
        dist = ((space[members] - centre) ** 2).sum(1)
        cells = []
        for d in (0, 1):
            m = members[ls.domain[members] == d]
            md = dist[ls.domain[members] == d]
            chosen = m[np.argsort(md, kind="stable")[:per_domain]]
            for i in range(per_domain):
                if i < len(chosen):
                    j = chosen[i]
                    b, a = read_pair(int(ls.domain[j]), int(ls.clip[j]), int(ls.t[j]))
                    cells.append(np.concatenate([_thumb(b, thumb), arrow, _thumb(a, thumb)], axis=1))
                else:
                    cells.append(blank)
                cells.append(pad)
            cells.append(np.full((thumb, 18, 3), 255, np.uint8))
        rows.append(np.concatenate(cells, axis=1))
        n_h = int((ls.domain[members] == 0).sum())
        captions.append(f"cluster {c}\nn={len(members)} ({n_h} human,\n{len(members) - n_h} robot)")
    # size rows to the strip's aspect ratio so no vertical space is wasted between them
    width_in = 12.0
    row_in = 0.86 * width_in * rows[0].shape[0] / rows[0].shape[1] + 0.06
    fig = Figure(figsize=(width_in, row_in * len(rows) + 0.5))
    axes = fig.subplots(len(rows), 1, squeeze=False)
    fig.subplots_adjust(left=0.13, right=0.99, top=1 - 0.45 / (row_in * len(rows) + 0.5), bottom=0.01, hspace=0.08)
    for ax, img, cap in zip(axes[:, 0], rows, captions):
        ax.imshow(img, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(cap, rotation=0, ha="right", va="center", fontsize=7)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle(f"{title}: per cluster, human (left) and robot (right) frame pairs x_t \u2192 x_t+{ls.gap}",
                 fontsize=9)
    return _save(fig, path)
