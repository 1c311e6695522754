"""EPIC-KITCHENS-100 as it ships: one human clip per narrated action segment.

Layout (Damen et al. 2022; videos from the download scripts, CSVs from ``epic-kitchens-100-annotations``)::

    ROOT/P01/videos/P01_01.MP4
    ANNOTATIONS/EPIC_100_train.csv         narration_id, participant_id, video_id, narration_timestamp,
    ANNOTATIONS/EPIC_100_validation.csv    start_timestamp, stop_timestamp ("00:00:01.089"), start_frame,
                                           stop_frame, narration ("open door"), verb, noun, ...

A clip is ``[start_timestamp, stop_timestamp)`` of its video (without timestamp columns:
``start_frame / fps`` to ``stop_frame / fps``, fps from ``EPIC_100_video_info.csv`` beside the CSVs);
the narration is the instruction; the split comes from the file (train 0, validation 1).
A stop that overruns its video's end (from the header) by less than ``CLAMP_FRAMES`` frame intervals
is annotation rounding (real rows end 13 ms after their video): it is clamped to the end and counted
in the import report; a larger overrun is left for the decoder to refuse (or ``--skip-bad`` to skip).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.annotations import file_name, parse_hms, read_csv, video_probe
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

SPLIT_FILES = {"train": ("EPIC_100_train.csv", S.SPLIT_TRAIN), "validation": ("EPIC_100_validation.csv", S.SPLIT_VAL)}
REQUIRED = ("narration_id", "participant_id", "video_id", "narration")
VIDEO_INFO = "EPIC_100_video_info.csv"
CLAMP_FRAMES = 2.0  # an overrun shorter than this many frame intervals is rounding, not a bad segment


@dataclass
class EpicKitchensConfig:
    """Options of ``hralign pairs import epic-kitchens ROOT``."""

    annotations: str | None = field(default=None, metadata={
        "help": "Folder with EPIC_100_train.csv / EPIC_100_validation.csv (default: ROOT, then "
                "ROOT/epic-kitchens-100-annotations)."})
    splits: str | None = field(default=None, metadata={
        "help": "Comma-separated splits to import: train, validation (default: every one whose CSV is present)."})

    def __post_init__(self) -> None:
        if self.splits is not None:
            bad = [s for s in self.split_list() if s not in SPLIT_FILES]
            if bad or not self.split_list():
                raise HRAlignError(f"`splits` should be a comma-separated subset of {', '.join(SPLIT_FILES)} "
                                   f"but the value passed is {self.splits!r}")

    def split_list(self) -> list[str]:
        return [s.strip() for s in (self.splits or "").split(",") if s.strip()]


def _annotation_dir(root: Path, config: EpicKitchensConfig) -> Path:
    if config.annotations:
        return Path(config.annotations)
    for d in (root, root / "epic-kitchens-100-annotations"):
        if any((d / f).is_file() for f, _ in SPLIT_FILES.values()):
            return d
    raise HRAlignError(f"{root}: no {' or '.join(f for f, _ in SPLIT_FILES.values())} here or in "
                       "epic-kitchens-100-annotations/ (pass --annotations DIR)")


def _video(root: Path, participant: str, video_id: str) -> Path | None:
    for suffix in (".MP4", ".mp4"):
        p = root / participant / "videos" / f"{video_id}{suffix}"
        if p.is_file():
            return p
    return None


def plan(root: Path, config: EpicKitchensConfig) -> ImportPlan:
    """List one human clip per annotated segment of every video present (nothing is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a directory (expected EPIC-KITCHENS' root with P01/videos/...)")
    ann = _annotation_dir(root, config)
    if config.splits is not None:
        names = config.split_list()
        for s in names:
            if not (ann / SPLIT_FILES[s][0]).is_file():
                raise HRAlignError(f"{ann / SPLIT_FILES[s][0]}: not found (asked for split {s!r})")
    else:
        names = [s for s, (f, _) in SPLIT_FILES.items() if (ann / f).is_file()]
        if not names:
            raise HRAlignError(f"{ann}: no {' or '.join(f for f, _ in SPLIT_FILES.values())}")
    fps = _video_fps(ann / VIDEO_INFO)
    out = ImportPlan()
    missing: dict[str, int] = {}
    probes: dict[Path, tuple[float, float] | None] = {}
    clamped: list[tuple[str, float]] = []  # (narration_id, seconds cut)
    for s in names:
        path = ann / SPLIT_FILES[s][0]
        for line, row in enumerate(read_csv(path, REQUIRED), start=2):
            video = _video(root, file_name(row["participant_id"], f"{path}:{line}: participant_id"),
                           file_name(row["video_id"], f"{path}:{line}: video_id"))
            if video is None:
                missing[row["video_id"]] = missing.get(row["video_id"], 0) + 1
                continue
            try:
                start, end = _segment(row, fps, f"{path}:{line}")
            except HRAlignError as e:
                out.skipped.append((row["narration_id"], str(e)))
                continue
            if not row["narration"]:
                out.skipped.append((row["narration_id"], f"{path}:{line}: empty narration"))
                continue
            cut = _clamped_end(video, start, end, probes)
            if cut is not None:
                clamped.append((row["narration_id"], end - cut))
                end = cut
            out.clips.append(ClipSource(key=row["narration_id"], domain="human", instruction=row["narration"],
                                        frames=VideoSegment(video, start, end), split=SPLIT_FILES[s][1]))
    for vid, n in sorted(missing.items()):
        part = vid.split("_")[0]
        out.skipped.append((vid, f"{n} segments: video {root / part / 'videos' / (vid + '.MP4')} not found"))
    if clamped:
        worst = max(clamped, key=lambda kc: kc[1])
        out.notes.append(f"clamped {len(clamped)} segment ends that overran their video by less than "
                         f"{CLAMP_FRAMES:g} frame intervals (annotation rounding; largest: {worst[0]} by "
                         f"{worst[1] * 1000:.0f} ms)")
    return out


def _clamped_end(video: Path, start: float, end: float, probes: dict[Path, tuple[float, float] | None]) -> float | None:
    """The video's end when ``end`` overruns it by less than CLAMP_FRAMES frame intervals, else None."""
    if video not in probes:
        try:
            probes[video] = video_probe(video)
        except HRAlignError:  # left as is: the decoder names the file (or --skip-bad skips the clip)
            probes[video] = None
    if probes[video] is None:
        return None
    duration, rate = probes[video]
    return duration if start < duration < end < duration + CLAMP_FRAMES / rate else None


def _video_fps(path: Path) -> dict[str, float]:
    """video_id -> fps from EPIC_100_video_info.csv (empty when the file is absent)."""
    if not path.is_file():
        return {}
    out = {}
    for row in read_csv(path, ("video_id", "fps")):
        try:
            fps = float(row["fps"])
        except ValueError:
            fps = float("nan")
        if not 0 < fps < float("inf"):
            raise HRAlignError(f"{path}: fps {row['fps']!r} of {row['video_id']}, expected a positive number")
        out[row["video_id"]] = fps
    return out


def _segment(row: dict[str, str], fps: dict[str, float], where: str) -> tuple[float, float]:
    """(start_s, end_s) of a row: its timestamps, else its frames over the video's fps."""
    if row.get("start_timestamp") and row.get("stop_timestamp"):
        start, end = parse_hms(row["start_timestamp"]), parse_hms(row["stop_timestamp"])
    elif row.get("start_frame") and row.get("stop_frame"):
        rate = fps.get(row["video_id"])
        if rate is None:
            raise HRAlignError(f"{where}: no timestamps and no fps for {row['video_id']} in {VIDEO_INFO}")
        try:
            start, end = int(row["start_frame"]) / rate, int(row["stop_frame"]) / rate
        except ValueError as e:
            raise HRAlignError(f"{where}: start_frame/stop_frame are not integers") from e
    else:
        raise HRAlignError(f"{where}: neither start_timestamp/stop_timestamp nor start_frame/stop_frame")
    if not 0 <= start < end:
        raise HRAlignError(f"{where}: segment {start:.3f}..{end:.3f} s is empty or negative")
    return start, end
