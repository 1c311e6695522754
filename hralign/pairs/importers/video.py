"""Frame readers of the import pipeline: a time segment of a video (PyAV) or an image array in HDF5.

A LeRobot v3.0 mp4 holds many episodes one after the other; an episode is the frames whose
presentation time lies in ``[from_timestamp, to_timestamp)``. :func:`read_segment` seeks to the
keyframe before ``start_s`` and decodes forward, keeping frames by their presentation time (a
half-frame tolerance absorbs the rounding of timestamps written as floats), which is exact
whatever the keyframe interval. Every decoder failure becomes an :class:`HRAlignError` naming
the file: bad input must not crash an import of ten thousand clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError


def read_segment(path: str | Path, start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames of ``path`` whose time is in ``[start_s, end_s)`` and their times from the first one.

    Returns ``(frames, times_s)``: uint8 (T, H, W, 3) RGB and float64 (T,) with ``times_s[0] == 0``.
    ``end_s=None`` reads to the end. A segment that runs past the end of the video (by more than
    one frame), an empty segment or a file that does not decode is an :class:`HRAlignError`.
    """
    import av  # PyAV: imported here so listing importers does not load FFmpeg

    p = Path(path)
    if not p.is_file():
        raise HRAlignError(f"{p}: video not found")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise HRAlignError(f"{p}: segment {start_s}..{end_s} s is empty or negative, expected 0 <= start < end")
    try:
        with av.open(str(p), "r") as container:
            if not container.streams.video:
                raise HRAlignError(f"{p}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 30)
            tol = 0.5 / rate
            if start_s > tol:
                container.seek(int(max(0.0, start_s - tol) / stream.time_base), stream=stream, backward=True,
                               any_frame=False)
            frames: list[np.ndarray] = []
            times: list[float] = []
            last_t = None
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else float(frame.time)
                last_t = t
                if t < start_s - tol:
                    continue
                if end_s is not None and t >= end_s - tol:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
    except HRAlignError:
        raise
    except Exception as e:  # noqa: BLE001 - av raises many error types (InvalidDataError, EOFError, ...): all mean "unreadable"
        raise HRAlignError(f"{p}: cannot decode video ({type(e).__name__}: {e}); the file may be truncated or corrupt") from e
    if not frames:
        end = "the end" if last_t is None else f"{last_t + 1 / rate:.3f} s"
        raise HRAlignError(f"{p}: no frames in segment {start_s:.3f}..{'end' if end_s is None else f'{end_s:.3f}'} s; "
                           f"the video ends at {end} (timestamps past the end of the video, or a truncated file)")
    if end_s is not None and times[-1] + 1.0 / rate < end_s - tol:
        raise HRAlignError(f"{p}: segment {start_s:.3f}..{end_s:.3f} s runs past the end of the video "
                           f"(last frame at {times[-1]:.3f} s; timestamps past the end, or a truncated file)")
    t = np.asarray(times, dtype=np.float64)
    return np.stack(frames), t - t[0]


def read_h5_frames(path: str | Path, key: str, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames stored as uint8 (T, H, W, 3) at ``key`` of an HDF5 file, with times ``arange(T) / fps``."""
    import h5py

    p = Path(path)
    try:
        with h5py.File(p, "r") as h:
            if key not in h:
                raise HRAlignError(f"{p}: no dataset {key!r}")
            ds = h[key]
            if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[-1] != 3:
                what = "a group" if not isinstance(ds, h5py.Dataset) else f"{ds.dtype} {list(ds.shape)}"
                raise HRAlignError(f"{p}: {key} is {what}, expected uint8 images [T, H, W, 3]")
            frames = ds[()]
    except HRAlignError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise HRAlignError(f"{p}: cannot read {key} ({type(e).__name__}: {e})") from e
    if frames.shape[0] == 0:
        raise HRAlignError(f"{p}: {key} has no frames")
    return frames, np.arange(frames.shape[0], dtype=np.float64) / float(fps)
