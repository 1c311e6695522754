"""Build a pairs file from your own videos: a CSV manifest with one (human, robot, task) row per pair.

Videos (mp4/webm/mov/avi/mkv via PyAV, gif via Pillow, both through imageio) or folders of
images (png/jpg, sorted by name) are decoded one clip at a time, optionally subsampled to a
target fps and resized, and streamed into :class:`~hralign.pairs.writer.PairsWriter`. A clip
used by several rows is stored once. Any failure aborts the writer: nothing half-written is left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from hralign.config_checks import check_int, check_number
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.csvtable import read_csv_records
from hralign.pairs.writer import PairsWriter, check_compression

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
REQUIRED_COLUMNS = ("human", "robot", "task")
SPLIT_VALUES = {"": None, "train": S.SPLIT_TRAIN, "0": S.SPLIT_TRAIN, "val": S.SPLIT_VAL, "validation": S.SPLIT_VAL,
                "1": S.SPLIT_VAL}


@dataclass
class BuildConfig:
    """How :func:`build_from_manifest` turns videos into clips."""

    image_size: int | None = field(default=None, metadata={"help": "Centre-crop to square and resize to this side "
                                                                   "(default: keep the size; all clips of a domain must then match)."})
    fps: float | None = field(default=None, metadata={"help": "Subsample every clip to this frame rate (default: keep all frames)."})
    folder_fps: float = field(default=30.0, metadata={"help": "Frame rate assumed for image folders (for --fps)."})
    max_frames: int | None = field(default=None, metadata={"help": "Keep at most this many frames per clip (after fps)."})
    compression: str | None = field(default=None, metadata={"help": "HDF5 filter for frames: none, gzip, lzf or blosc."})

    def __post_init__(self) -> None:
        if self.image_size is not None:
            check_int(self.image_size, "image_size", 8)
        for name in ("fps", "folder_fps"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, 0, lo_open=True)
        if self.max_frames is not None:
            check_int(self.max_frames, "max_frames", 1)
        self.compression = check_compression(self.compression)


@dataclass
class ManifestRow:
    line: int
    human: Path
    robot: Path
    task: str
    split: int | None


def read_manifest(manifest: str | os.PathLike) -> list[ManifestRow]:
    """Parse and check the manifest; paths are relative to the manifest's folder."""
    m = Path(manifest)
    rows = []
    for i, rec in read_csv_records(m, REQUIRED_COLUMNS, "manifest", optional=("split",)):
        split_raw = rec.get("split", "").lower()
        if split_raw not in SPLIT_VALUES:
            raise HRAlignError(f"{m}: line {i}: split {split_raw!r}, expected one of train, val, 0, 1 or empty")
        rows.append(ManifestRow(i, (m.parent / rec["human"]), (m.parent / rec["robot"]), rec["task"],
                                SPLIT_VALUES[split_raw]))
    splits = {r.split is None for r in rows}
    if len(splits) > 1:
        raise HRAlignError(f"{m}: column `split` is filled on some rows and empty on others; fill it everywhere or nowhere")
    for r in rows:
        for col, p in (("human", r.human), ("robot", r.robot)):
            if not p.exists():
                raise HRAlignError(f"{m}: line {r.line}: {col} video {p} not found")
    return rows


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize with Pillow's antialiasing filter (uint8 HxWx3 -> size x size x 3)."""
    from PIL import Image

    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(frame[top:top + s, left:left + s])
    return np.asarray(img.resize((size, size), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)


def _to_rgb(frame: np.ndarray, where: Path) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise HRAlignError(f"{where}: frame of shape {list(frame.shape)}, expected H x W x 3 (RGB)")
    if frame.dtype != np.uint8:
        raise HRAlignError(f"{where}: frames of dtype {frame.dtype}, expected 8-bit RGB")
    return frame[..., :3]


def _iter_source(path: Path, folder_fps: float) -> tuple[float, Iterator[np.ndarray]]:
    """(source fps, frame iterator) for a video file or an image folder."""
    import imageio.v3 as iio

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HRAlignError(f"{path}: image folder has no {'/'.join(IMAGE_SUFFIXES)} files")
        return folder_fps, (iio.imread(p) for p in files)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise HRAlignError(f"{path}: unsupported video type {suffix!r}, expected one of {', '.join(VIDEO_SUFFIXES)} "
                           "or an image folder")
    if suffix == ".gif":
        meta = iio.immeta(path)
        duration_ms = float(meta.get("duration") or 100.0)
        return 1000.0 / max(duration_ms, 1.0), iio.imiter(path, mode="RGB")
    meta = iio.immeta(path, plugin="pyav")
    return float(meta.get("fps") or folder_fps), iio.imiter(path, plugin="pyav", format="rgb24")


def load_clip(path: str | os.PathLike, config: BuildConfig | None = None) -> np.ndarray:
    """Decode one video or image folder into uint8 (T, H, W, 3) after fps subsampling and resizing."""
    cfg = config or BuildConfig()
    p = Path(path)
    try:
        src_fps, frames = _iter_source(p, cfg.folder_fps)
        step = src_fps / cfg.fps if cfg.fps else 1.0
        out: list[np.ndarray] = []
        next_keep = 0.0
        for i, fr in enumerate(frames):
            if i + 1e-6 < next_keep:
                continue
            next_keep += max(step, 1.0) if cfg.fps else 1.0
            fr = _to_rgb(fr, p)
            out.append(_resize(fr, cfg.image_size) if cfg.image_size else np.ascontiguousarray(fr))
            if cfg.max_frames and len(out) >= cfg.max_frames:
                break
    except HRAlignError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is "this file is unreadable", named
        raise HRAlignError(f"{p}: cannot decode video ({type(e).__name__}: {e})") from e
    if not out:
        raise HRAlignError(f"{p}: no frames decoded, expected a non-empty video")
    shapes = {f.shape for f in out}
    if len(shapes) > 1:
        raise HRAlignError(f"{p}: frames change size within the clip ({sorted(shapes)[:2]}); pass image_size (--image-size)")
    return np.stack(out)


def build_from_manifest(manifest_csv: str | os.PathLike, out: str | os.PathLike, image_size: int | None = None,
                        fps: float | None = None, overwrite: bool = False, progress: bool = True,
                        config: BuildConfig | None = None) -> Path:
    """Write a pairs file ``out`` from ``manifest_csv`` (columns human, robot, task[, split]); returns ``out``.

    ``image_size``/``fps`` override the matching fields of ``config``. Clips are decoded one at
    a time (never the whole set in memory) and the file appears only when every clip succeeded.
    """
    cfg = config or BuildConfig()
    if image_size is not None or fps is not None:
        cfg = BuildConfig(image_size=image_size if image_size is not None else cfg.image_size,
                          fps=fps if fps is not None else cfg.fps, folder_fps=cfg.folder_fps,
                          max_frames=cfg.max_frames, compression=cfg.compression)
    rows = read_manifest(manifest_csv)
    out = Path(out)
    if out.exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    from tqdm.auto import tqdm

    with PairsWriter(out, compression=cfg.compression, overwrite=overwrite) as w:
        cache: dict[tuple[str, Path], tuple[int, int]] = {}  # (domain, file) -> (clip, task)
        for r in tqdm(rows, desc="build", unit="pair", disable=None if progress else True):  # None: off when not a TTY
            task = w.add_task(r.task)
            ids = []
            for d, p in (("human", r.human), ("robot", r.robot)):
                key = (d, p.resolve())
                if key not in cache:
                    clip = load_clip(p, cfg)
                    try:
                        cache[key] = (w.add_clip(d, clip, task), task)
                    except HRAlignError as e:
                        raise HRAlignError(f"{p}: {e}") from e
                elif cache[key][1] != task:
                    raise HRAlignError(f"{manifest_csv}: line {r.line}: {d} video {p} was listed earlier with task "
                                       f"{w.tasks[cache[key][1]]!r}, here with {r.task!r}; a clip has one task")
                ids.append(cache[key][0])
            w.add_pair(ids[0], ids[1], split=r.split)
    return out
