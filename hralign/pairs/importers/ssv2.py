"""Something-Something v2 as it ships: one human clip per video, its label as the instruction.

Layout (Goyal et al. 2017)::

    ROOT/[20bn-something-something-v2/]<id>.webm
    ROOT/labels/train.json        [{"id": "78687", "label": "holding potato next to vicks vaporub bottle",
    ROOT/labels/validation.json     "template": "Holding [something] next to [something]",
                                    "placeholders": ["potato", "vicks vaporub bottle"]}, ...]
    ROOT/labels/labels.json       {"Holding something next to something": "10", ...} (not needed)

The label files also ship under their official names (``something-something-v2-train.json``,
``-validation.json``, ``-labels.json``), in ``labels/`` or in ROOT itself; both names are read.

``--instruction label`` (default) takes the filled-in label; ``template`` takes the template with
its brackets removed ("Holding something next to something"), which gives 174 shared tasks, the
better choice for pairing by task text. The split comes from the file (train 0, validation 1);
``test.json`` has no labels and is not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.annotations import file_name, read_json
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

SPLIT_FILES = {"train": ("train.json", S.SPLIT_TRAIN), "validation": ("validation.json", S.SPLIT_VAL)}
OFFICIAL_PREFIX = "something-something-v2-"  # the official name of each label file: this + the short one
LABEL_DIRS = ("labels", "")
VIDEO_DIRS = ("", "20bn-something-something-v2")
INSTRUCTIONS = ("label", "template")


@dataclass
class SSv2Config:
    """Options of ``hralign pairs import ssv2 ROOT``."""

    labels: str | None = field(default=None, metadata={
        "help": "Folder with train.json / validation.json or something-something-v2-train.json / -validation.json "
                "(default: ROOT/labels, then ROOT)."})
    splits: str | None = field(default=None, metadata={
        "help": "Comma-separated splits to import: train, validation (default: every one whose JSON is present)."})
    instruction: str = field(default="label", metadata={
        "help": "label: the filled-in label ('holding potato next to vicks vaporub bottle'); template: "
                "the template without brackets ('Holding something next to something')."})

    def __post_init__(self) -> None:
        if self.instruction not in INSTRUCTIONS:
            raise HRAlignError(f"`instruction` should be one of {INSTRUCTIONS} but the value passed is {self.instruction!r}")
        if self.splits is not None:
            names = [s.strip() for s in self.splits.split(",") if s.strip()]
            if not names or any(s not in SPLIT_FILES for s in names):
                raise HRAlignError(f"`splits` should be a comma-separated subset of {', '.join(SPLIT_FILES)} "
                                   f"but the value passed is {self.splits!r}")


def _instruction(entry: dict, how: str) -> str:
    text = entry.get("label") if how == "label" else entry.get("template")
    if not isinstance(text, str):
        return ""
    return " ".join(text.replace("[", "").replace("]", "").split())


def _names(split: str) -> tuple[str, str]:
    short = SPLIT_FILES[split][0]
    return short, OFFICIAL_PREFIX + short


def _label_file(labels: Path, split: str) -> Path | None:
    """The label file of ``split`` in ``labels`` under either of its names (None when absent)."""
    return next((labels / n for n in _names(split) if (labels / n).is_file()), None)


def plan(root: Path, config: SSv2Config) -> ImportPlan:
    """List one human clip per labelled video present (nothing is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a directory (expected SSv2's root with <id>.webm and labels/)")
    dirs = [Path(config.labels)] if config.labels else [root / d for d in LABEL_DIRS]
    labels = next((d for d in dirs if any(_label_file(d, s) for s in SPLIT_FILES)), dirs[0])
    if config.splits is not None:
        names = [s.strip() for s in config.splits.split(",") if s.strip()]
        for s in names:
            if _label_file(labels, s) is None:
                raise HRAlignError(f"{labels}: no {' or '.join(_names(s))} (asked for split {s!r}; pass --labels DIR)")
    else:
        names = [s for s in SPLIT_FILES if _label_file(labels, s)]
        if not names:
            accepted = ", ".join(n for s in SPLIT_FILES for n in _names(s))
            classes = [d / n for d in dirs for n in ("labels.json", OFFICIAL_PREFIX + "labels.json") if (d / n).is_file()]
            only = f"; {classes[0].name} holds only the class names" if classes else ""
            raise HRAlignError(f"{' or '.join(str(d) for d in dirs)}: no SSv2 label file with videos (expected "
                               f"{accepted}{only}; pass --labels DIR)")
    video_dir = next((root / d for d in VIDEO_DIRS if any((root / d).glob("*.webm"))), root)
    expected = "a list of {'id', 'label', 'template', 'placeholders'}"
    out = ImportPlan()
    for s in names:
        path = _label_file(labels, s)
        entries = read_json(path, expected)
        if not isinstance(entries, list):
            raise HRAlignError(f"{path}: expected {expected}, found a JSON {type(entries).__name__}")
        if not entries:
            raise HRAlignError(f"{path}: annotation file holds no videos (expected {expected})")
        for i, e in enumerate(entries):
            vid = str(e.get("id", "")).strip() if isinstance(e, dict) else ""
            if not vid:
                out.skipped.append((f"{path.name}[{i}]", "entry has no `id`"))
                continue
            text = _instruction(e, config.instruction)
            if not text:
                out.skipped.append((vid, f"{path.name}: entry has no `{config.instruction}` text"))
                continue
            video = video_dir / f"{file_name(vid, f'{path}: entry {i} id')}.webm"
            if not video.is_file():
                out.skipped.append((vid, f"video {video} not found"))
                continue
            out.clips.append(ClipSource(key=vid, domain="human", instruction=text, frames=VideoSegment(video),
                                        split=SPLIT_FILES[s][1], origin=path))
    return out
