"""Ego4D as the Ego4D CLI downloads it: one human clip per narration, the narration as instruction.

Layout (Grauman et al. 2022; ``ego4d --datasets full_scale annotations``)::

    ROOT/v2/full_scale/<video_uid>.mp4
    ROOT/v2/annotations/narration.json      {video_uid: {"narration_pass_1": {"narrations": [
                                              {"timestamp_sec": 3.34, "timestamp_frame": 100,
                                               "narration_text": "#C C picks a bag of clothes from the floor",
                                               "annotation_uid": ...}, ...], "summaries": [...]},
                                             "narration_pass_2": {...}}, ...}

Narrations are instants; a clip is the ``window_s`` seconds centred on one (clipped to the video,
whose duration is read from its header). ``#C`` marks the camera wearer's own actions, which are the
ones a hand demonstrates; others (``#O``, another person) are skipped unless asked for, and
``#unsure`` narrations always are. The instruction is the text without the tags ("picks a bag of
clothes from the floor"). No split is set (Ego4D's narrations have none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs.importers.annotations import file_name, read_json, video_duration_s
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

VIDEO_DIRS = ("v2/full_scale", "full_scale")
NARRATION_FILES = ("v2/annotations/narration.json", "annotations/narration.json")
_TAG = re.compile(r"#\w+")


@dataclass
class Ego4DConfig:
    """Options of ``hralign pairs import ego4d ROOT``."""

    annotations: str | None = field(default=None, metadata={
        "help": "narration.json (default: ROOT/v2/annotations/narration.json, then ROOT/annotations/narration.json)."})
    narration_pass: int = field(default=1, metadata={"help": "Which annotator pass to read: 1 or 2."})
    window_s: float = field(default=2.0, metadata={"help": "Seconds of video per narration, centred on its timestamp."})
    others: bool = field(default=False, metadata={
        "help": "Also import narrations of other people (#O); default: only the camera wearer's actions (#C)."})

    def __post_init__(self) -> None:
        if self.narration_pass not in (1, 2) or isinstance(self.narration_pass, bool):
            raise HRAlignError(f"`narration_pass` should be 1 or 2 but the value passed is {self.narration_pass!r}")
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, (int, float)) or not self.window_s > 0:
            raise HRAlignError(f"`window_s` should be a positive number of seconds but the value passed is {self.window_s!r}")


def clean_narration(text: str) -> str:
    """'#C C picks a bag' -> 'picks a bag': drop the tags and the 'C' subject that follows '#C'."""
    t = text.strip()
    t = re.sub(r"^#C\s+C\s+", "", t)
    t = _TAG.sub("", t)
    return " ".join(t.split()).strip(" .")


def _find(root: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (root / n).exists():
            return root / n
    raise HRAlignError(f"{root}: no {what} (looked for {', '.join(names)})")


def plan(root: Path, config: Ego4DConfig) -> ImportPlan:
    """List one human clip per kept narration of every downloaded video (nothing is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a directory (expected the Ego4D download folder with v2/full_scale)")
    ann = Path(config.annotations) if config.annotations else _find(root, NARRATION_FILES, "narration.json")
    videos = _find(root, VIDEO_DIRS, "video folder")
    expected = "{video_uid: {'narration_pass_1': {'narrations': [{'timestamp_sec', 'narration_text'}]}}}"
    data = read_json(ann, expected)
    if not isinstance(data, dict):
        raise HRAlignError(f"{ann}: expected {expected}, found a JSON {type(data).__name__}")
    pass_key = f"narration_pass_{config.narration_pass}"
    out = ImportPlan()
    total = 0
    for uid in sorted(data):
        entry = data[uid]
        if not isinstance(entry, dict):
            raise HRAlignError(f"{ann}: {uid} should be an object with {pass_key}, found a JSON {_json_type(entry)}")
        npass = entry.get(pass_key, {})
        if not isinstance(npass, dict):
            raise HRAlignError(f"{ann}: {uid}/{pass_key} should be an object with 'narrations', "
                               f"found a JSON {_json_type(npass)}")
        narrations = npass.get("narrations", [])
        if not isinstance(narrations, list):
            raise HRAlignError(f"{ann}: {uid}/{pass_key}/narrations should be a list, found a JSON {_json_type(narrations)}")
        total += len(narrations)
        if not narrations:
            continue
        path = videos / f"{file_name(uid, f'{ann}: video_uid')}.mp4"
        if not path.is_file():
            out.skipped.append((uid, f"{len(narrations)} narrations: video {path} not found"))
            continue
        try:
            duration = video_duration_s(path)
        except HRAlignError as e:
            out.skipped.append((uid, f"{len(narrations)} narrations: {e}"))
            continue
        for i, n in enumerate(narrations):
            key = f"{uid}/{config.narration_pass}/{i}"
            clip, why = _clip(n, key, path, duration, config)
            if clip is None:
                out.skipped.append((key, why))
            else:
                clip.origin = ann
                out.clips.append(clip)
    if total == 0:
        raise HRAlignError(f"{ann}: holds no narrations in {pass_key} (expected {expected})")
    if not out.clips:
        key, why = out.skipped[0]
        raise HRAlignError(f"{ann}: no narration gave a clip ({len(out.skipped)} skipped; first: {key}: {why})")
    return out


def _json_type(value: object) -> str:
    """JSON's name for a parsed value's type (list -> array, dict -> object), for error lines."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _clip(n: object, key: str, path: Path, duration: float, config: Ego4DConfig) -> tuple[ClipSource | None, str]:
    """One narration's clip, or (None, why it is skipped)."""
    if not isinstance(n, dict) or not isinstance(n.get("narration_text"), str) \
            or not isinstance(n.get("timestamp_sec"), (int, float)):
        return None, "narration lacks `narration_text` or a numeric `timestamp_sec`"
    text = n["narration_text"]
    if "#unsure" in text.lower():
        return None, "narration is marked #unsure"
    if not config.others and not text.lstrip().startswith("#C"):
        return None, "not the camera wearer's action (#C); --others keeps it"
    instruction = clean_narration(text)
    if not instruction:
        return None, "narration text is empty once tags are removed"
    t = float(n["timestamp_sec"])
    if not 0 <= t <= duration:
        return None, f"timestamp {t:.2f} s outside the video (0..{duration:.2f} s)"
    start = max(0.0, t - config.window_s / 2)
    end = min(duration, t + config.window_s / 2)
    return ClipSource(key=key, domain="human", instruction=instruction, frames=VideoSegment(path, start, end)), ""
