"""Side-by-side videos (GIF / MP4) and frame-strip figures (PNG) of world-model rollouts.

Used by ``hralign lam transfer`` and ``hralign lam imagine``. GIF/MP4 go through imageio (Pillow
/ PyAV plugins); labels are drawn with Pillow's default bitmap font so nothing is downloaded.
matplotlib is imported inside :func:`write_strip_figure` only (it costs ~1 s; the rollout
itself does not need it). Every file is written atomically (:mod:`hralign.atomic`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from hralign.atomic import atomic_path
from hralign.errors import HRAlignError

VIDEO_SUFFIXES = (".gif", ".mp4")


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """A white band with ``text`` above ``img`` (uint8 H, W, 3)."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (img.shape[1], 12), (255, 255, 255))
    ImageDraw.Draw(band).text((2, 0), text[: max(1, img.shape[1] // 6)], fill=(0, 0, 0))
    return np.concatenate([np.asarray(band), img], 0)


def side_by_side(columns: Sequence[tuple[str, np.ndarray]], scale: int = 3, sep: int = 4) -> np.ndarray:
    """Columns of labelled frame sequences -> one video uint8 (T, H', W', 3).

    ``columns``: (label, uint8 frames (T_i, H, W, 3)); shorter columns hold their last frame.
    Frames are enlarged ``scale`` times (nearest neighbour: the pixels the model made, not smoothed).
    """
    if not columns:
        raise HRAlignError("side_by_side: no columns to draw")
    length = max(len(f) for _, f in columns)
    height = max(f.shape[1] for _, f in columns) * scale
    out = []
    for t in range(length):
        tiles = []
        for label, frames in columns:
            img = frames[min(t, len(frames) - 1)].repeat(scale, 0).repeat(scale, 1)
            if img.shape[0] < height:
                img = np.pad(img, ((0, height - img.shape[0]), (0, 0), (0, 0)), constant_values=255)
            tiles.append(_label(img, label))
            tiles.append(np.full((tiles[-1].shape[0], sep, 3), 255, np.uint8))
        out.append(np.concatenate(tiles[:-1], 1))
    return np.stack(out)


def write_video(path: str | os.PathLike, video: np.ndarray, fps: float = 2.0) -> Path:
    """uint8 (T, H, W, 3) -> ``path`` (.gif looping forever, or .mp4), atomically."""
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise HRAlignError(f"--out {path}: unknown video type {suffix!r}; expected one of {VIDEO_SUFFIXES}")
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, video, extension=".gif", duration=int(1000 / fps), loop=0)
        else:
            # H.264 wants even sides
            h, w = video.shape[1] - video.shape[1] % 2, video.shape[2] - video.shape[2] % 2
            # the temporary name ends in .tmp, so name the container instead of letting imageio guess
            with iio.imopen(tmp, "w", plugin="pyav", container="mp4") as f:
                f.write(np.ascontiguousarray(video[:, :h, :w]), codec="libx264", fps=fps)
    return path


def write_strip_figure(path: str | os.PathLike, rows: Sequence[tuple[str, np.ndarray]], title: str,
                       step_label: str = "step", curves: dict[str, Sequence[float]] | None = None,
                       curve_label: str = "MSE vs real") -> Path:
    """A PNG: one row of frames per entry of ``rows`` (label, uint8 (T, H, W, 3)), optional curves."""
    from matplotlib.figure import Figure  # object-oriented API: no pyplot, no backend switch

    cols = max(len(f) for _, f in rows)
    extra = 1 if curves else 0
    fig = Figure(figsize=(1.3 * cols + 1.5, 1.4 * (len(rows) + extra * 1.6) + 0.5))
    grid = fig.add_gridspec(len(rows) + extra, cols, height_ratios=[1] * len(rows) + ([1.6] if extra else []))
    for i, (label, frames) in enumerate(rows):
        for j in range(cols):
            ax = fig.add_subplot(grid[i, j])
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(frames):
                ax.imshow(frames[j], interpolation="nearest")
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(f"{step_label} {j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if curves:
        ax = fig.add_subplot(grid[len(rows), :])
        for name, values in curves.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.set_xlabel(step_label)
        ax.set_ylabel(curve_label, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    return path
