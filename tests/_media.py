"""Small videos for importer tests, written with PyAV in the codecs the datasets ship (h264 mp4, VP8 webm).

Frame k is a flat colour (:func:`frame_color`), so a decoded frame is identified by its mean colour
within codec tolerance whatever the chroma subsampling.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_color(k: int, seed: int = 0) -> np.ndarray:
    """RGB of frame ``k`` (distinct per frame and per seed, away from 0/255 where codecs clip)."""
    return np.array([(40 + 23 * k + 50 * seed) % 200 + 20, (200 - 17 * k + 30 * seed) % 200 + 20,
                     (90 + 31 * k) % 200 + 20], dtype=np.uint8)


def make_frames(n: int, size: tuple[int, int] = (32, 48), seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3] flat-coloured frames."""
    h, w = size
    return np.stack([np.broadcast_to(frame_color(k, seed), (h, w, 3)) for k in range(n)]).copy()


def write_video(path: Path, frames: np.ndarray, fps: int = 10, codec: str | None = None) -> Path:
    """Encode ``frames`` (uint8 [T, H, W, 3]) to ``path``: libx264 for .mp4/.MP4, VP8 for .webm."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or ("libvpx" if path.suffix.lower() == ".webm" else "libx264")
    fmt = "webm" if path.suffix.lower() == ".webm" else "mp4"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=Fraction(fps))
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "4"} if codec == "libx264" else {"crf": "4", "b": "2M"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def mean_colors(frames: np.ndarray) -> np.ndarray:
    """Mean RGB of each frame: float [T, 3]."""
    return frames.reshape(frames.shape[0], -1, 3).mean(axis=1)
