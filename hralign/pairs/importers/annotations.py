"""Shared readers for the human video sets' annotation files (Ego4D, EPIC-KITCHENS, SSv2).

One job: open an annotation file the way its dataset ships it and turn every problem (missing,
empty, not JSON/CSV, no rows) into one :class:`HRAlignError` line naming the file. Plus the one
header-only probe the Ego4D and EPIC-KITCHENS importers need (a video's duration and frame rate, so a
window around a narration near the end, or a segment end rounded past the video, is clipped instead
of running past the video).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hralign.errors import HRAlignError


def read_json(path: Path, expected: str) -> Any:
    """Parse a JSON annotation file; ``expected`` describes its content for the error line."""
    if not path.is_file():
        raise HRAlignError(f"{path}: annotation file not found (expected {expected})")
    if path.stat().st_size == 0:
        raise HRAlignError(f"{path}: annotation file is empty (expected {expected})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HRAlignError(f"{path}: not valid JSON ({e}); expected {expected}") from e


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV annotation file with at least the ``required`` columns; header-only is an error."""
    if not path.is_file():
        raise HRAlignError(f"{path}: annotation file not found")
    if path.stat().st_size == 0:
        raise HRAlignError(f"{path}: annotation file is empty (expected a CSV with columns {', '.join(required)})")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise HRAlignError(f"{path}: CSV columns are {header[:12]}, missing {missing}")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if isinstance(v, str) or v is None}
                    for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise HRAlignError(f"{path}: cannot be read as CSV ({e})") from e
    if not rows:
        raise HRAlignError(f"{path}: annotation file has a header but no rows")
    return rows


def file_name(value: str, what: str) -> str:
    """``value`` (an id an annotation file names a video by) if it is one plain file name; an id holding
    a path separator or ``..`` would reach outside the dataset's folder, so it is an error naming ``what``."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise HRAlignError(f"{what}: {value!r} is not a plain file name (expected an id such as P01_01, "
                           "without '/', '\\' or '..')")
    return value


def video_duration_s(path: Path) -> float:
    """Duration of a video in seconds from its container header (PyAV; no frame is decoded)."""
    return video_probe(path)[0]


def video_probe(path: Path) -> tuple[float, float]:
    """(duration in seconds, frame rate) of a video from its container header (PyAV; no frame is decoded)."""
    import av  # heavy; only when an importer needs a duration

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or 30.0  # 30: a rate-less header (rare)
            if s.duration is not None and s.time_base is not None:  # the video's own (audio may run longer)
                return float(s.duration * s.time_base), rate
            if c.duration is not None:
                return c.duration / 1_000_000, rate  # av.time_base is microseconds
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise HRAlignError(f"{path}: cannot be opened as a video ({type(e).__name__}: {e})") from e
    raise HRAlignError(f"{path}: the container states no duration")


def parse_hms(value: str) -> float:
    """Seconds from 'HH:MM:SS.ff' (EPIC-KITCHENS timestamps) or a plain number."""
    parts = value.strip().split(":")
    try:
        if len(parts) == 1:
            return float(parts[0])
        secs = 0.0
        for p in parts:
            secs = secs * 60 + float(p)
        return secs
    except ValueError as e:
        raise HRAlignError(f"timestamp {value!r} is not HH:MM:SS.ff or seconds") from e
