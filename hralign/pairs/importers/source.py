"""What an importer hands to the import pipeline: one :class:`ClipSource` per clip, nothing decoded yet.

An importer (one module per dataset layout: ``lerobot``, ``robomimic``, ``rh20t``, ``ego4d``,
``epic_kitchens``, ``ssv2``, ``folder``) only *reads the layout*: it lists clips, their
instruction, where their frames are (:class:`VideoSegment` or :class:`H5Frames`), their per-step
actions/state with the time of each row, their split and what they pair with. Decoding, resampling
to ``--fps``, resizing, compression, worker processes, progress and resume belong to the pipeline
(``hralign.pairs.importers.pipeline``), so every importer gets them the same way.

Frame sources are small picklable dataclasses (they travel to decode worker processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class FrameSource(Protocol):
    """Where a clip's frames are. ``read()`` returns ``(frames, times_s)``.

    frames : uint8 array of shape (T, H, W, 3), RGB, in source resolution.
    times_s : float64 array of shape (T,), seconds from the clip's first frame (first is 0.0).
    """

    def read(self) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class VideoSegment:
    """Frames ``[start_s, end_s)`` of a video file, decoded with PyAV.

    ``end_s=None`` reads to the end. A segment past the end of the video, or a video that does
    not decode, is an :class:`~hralign.errors.HRAlignError` naming the file.
    """

    path: Path
    start_s: float = 0.0
    end_s: float | None = None

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        from hralign.pairs.importers.video import read_segment  # the pipeline's decoder (PyAV)

        return read_segment(self.path, self.start_s, self.end_s)


@dataclass(frozen=True)
class H5Frames:
    """Frames stored as an array in an HDF5 file (robomimic's ``obs/<camera>_image``), at ``fps``."""

    path: Path
    key: str
    fps: float

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        from hralign.pairs.importers.video import read_h5_frames

        return read_h5_frames(self.path, self.key, self.fps)


@dataclass
class ClipSource:
    """One clip of a source dataset, described but not decoded.

    key : unique and stable within one import (resume and the report of skipped clips use it).
    domain : "human" or "robot".
    instruction : the task's language instruction (becomes an entry of ``/tasks``).
    frames : a :class:`FrameSource`.
    actions, state : optional float arrays of shape (N, A) / (N, S), one row per source step.
    step_times_s : seconds (from the clip's first frame) of each actions/state row; ``None`` means
        the rows are aligned with the decoded frames one to one. The pipeline picks, for each kept
        frame, the row nearest in time.
    split : 0 train, 1 validation, or None (the pipeline's split rule decides).
    pair_key : clips of opposite domains with the same ``pair_key`` are paired (every human clip
        of a key with every robot clip of that key); ``None`` = unpaired.
    origin : the file the clip's description was read from (an annotation file for its instruction,
        a data parquet or HDF5 file for its actions/state), named when the pipeline refuses the clip's
        text or rows; ``None``: the frames' file.
    """

    key: str
    domain: str
    instruction: str
    frames: FrameSource
    actions: np.ndarray | None = None
    state: np.ndarray | None = None
    step_times_s: np.ndarray | None = None
    split: int | None = None
    pair_key: str | None = None
    origin: Path | None = None


@dataclass
class ImportPlan:
    """An importer's whole answer: the clips to import, what it skipped, the clips whose source is bad
    input (a missing or corrupt file, non-finite rows), each with a one-line reason naming the file,
    and notes on what it corrected (one line each, e.g. segment ends clamped), which the import report repeats.

    Bad clips are the ``--skip-bad`` kind: :func:`~hralign.pairs.importers.pipeline.run_import` stops
    on the first before anything is written, or with ``skip_bad`` lists them with the skipped ones.
    """

    clips: list[ClipSource] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key or path, reason)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (key, reason naming the file)
    notes: list[str] = field(default_factory=list)
