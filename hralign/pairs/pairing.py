"""Clip-level pairs between an unpaired human file and an unpaired robot file, by task text.

``hralign pairs import ego4d`` (or ``ssv2``, ``epic-kitchens``) gives human clips and
``pairs import lerobot`` robot clips, each with its instruction but no partner. HR-Align pairs
clips of the same task; here a human task is matched to a robot task either when their texts are
the same (``by="text"``: compared lower-cased, whitespace collapsed, trailing punctuation dropped)
or when the cosine similarity of their sentence embeddings is at least ``threshold``
(``by="embedding"``: each human task goes to its most similar robot task). The embedding function
is passed in (the CLI gives the bundled MiniLM of :mod:`hralign.encoders.text`), so ``pairs`` does
not import the encoders.

Within a matched task, clips are paired round-robin: ``max(H, R)`` pairs so that every human and
every robot clip is used at least once and the count grows linearly (``all_combinations`` gives the
``H x R`` product instead). Both clips of a pair are stored under the robot's instruction (a
pairs file's pair shares one task); the report keeps the human's original text. Clips of tasks
that found no partner are dropped, each task with its reason. Frames are streamed clip by clip.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hralign.atomic import write_text_atomic
from hralign.config_checks import check_choice, check_number
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import check_valid
from hralign.pairs.writer import PairsWriter, check_compression, check_not_an_input

PAIR_BY = ("text", "embedding")
Embed = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised float [N, D]


@dataclass
class PairingConfig:
    """How :func:`pair_files` matches human tasks to robot tasks."""

    by: str = field(default="text", metadata={"help": "text: identical task text (case, spaces and final punctuation "
                                                      "ignored); embedding: MiniLM cosine similarity >= --threshold."})
    threshold: float = field(default=0.8, metadata={"help": "Minimum cosine similarity of a human and a robot task "
                                                            "(--by embedding)."})
    all_combinations: bool = field(default=False, metadata={
        "help": "Pair every human with every robot clip of a matched task (default: round-robin, max(H, R) pairs)."})
    compression: str | None = field(default="lzf", metadata={"help": "HDF5 filter for frames: none, gzip, lzf or blosc."})

    def __post_init__(self) -> None:
        check_choice(self.by, "by", PAIR_BY)
        check_number(self.threshold, "threshold", -1, 1)  # a cosine similarity
        self.compression = check_compression(self.compression)


@dataclass
class PairingReport:
    """What :func:`pair_files` paired and dropped (saved as JSON beside the output)."""

    out: str
    by: str
    threshold: float | None
    matched: list[dict] = field(default_factory=list)  # per robot task: human_tasks [{task, clips, similarity}], counts, pairs
    dropped: list[dict] = field(default_factory=list)  # domain, task, clips, reason
    pairs: int = 0

    def lines(self) -> list[str]:
        """Human-readable summary, one line per matched and dropped task."""
        out = []
        for m in self.matched:
            tasks = ", ".join(repr(h["task"]) + ("" if h["similarity"] is None else f" (similarity {h['similarity']:.3f})")
                              for h in m["human_tasks"])
            out.append(f"paired {m['human_clips']} human clips of {tasks} with {m['robot_clips']} robot clips of "
                       f"{m['robot_task']!r}: {m['pairs']} pairs")
        for d in self.dropped:
            out.append(f"dropped {d['clips']} {d['domain']} clips of {d['task']!r}: {d['reason']}")
        n_h, n_r = sum(m["human_clips"] for m in self.matched), sum(m["robot_clips"] for m in self.matched)
        out.append(f"wrote {self.out}: {self.pairs} pairs of {n_h} human and {n_r} robot clips in {len(self.matched)} tasks; "
                   f"{sum(d['clips'] for d in self.dropped)} clips dropped (report: {report_path(self.out)})")
        return out


def report_path(out: str | os.PathLike) -> Path:
    """The JSON report beside ``out``: ``data.h5`` -> ``data.pairing.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".pairing.json")


def normalize_text(text: str) -> str:
    """Text used for ``by="text"``: lower case, single spaces, no trailing punctuation."""
    return " ".join(text.lower().split()).rstrip(".!?;, ")


def match_tasks(human: list[str], robot: list[str], config: PairingConfig,
                embed: Embed | None = None) -> tuple[dict[int, tuple[int, float | None]], dict[int, str], dict[int, str]]:
    """Match each human task to at most one robot task.

    Returns ``(matches, human_reasons, robot_reasons)``: human task -> (robot task, similarity or None
    for text), and why each unmatched human / robot task found no partner.
    """
    matches: dict[int, tuple[int, float | None]] = {}
    why_h: dict[int, str] = {}
    if config.by == "text":
        index = {}
        for j, t in enumerate(robot):
            index.setdefault(normalize_text(t), j)
        for i, t in enumerate(human):
            j = index.get(normalize_text(t))
            if j is None:
                why_h[i] = "no robot task with the same text"
            else:
                matches[i] = (j, None)
    else:
        if embed is None:
            raise HRAlignError("pairing by embedding needs a text encoder (`embed`); none was given")
        if human and robot:
            sim = np.asarray(embed(human), dtype=np.float64) @ np.asarray(embed(robot), dtype=np.float64).T  # (Kh, Kr)
            for i in range(len(human)):
                j = int(np.argmax(sim[i]))
                if sim[i, j] >= config.threshold:
                    matches[i] = (j, float(sim[i, j]))
                else:
                    why_h[i] = f"most similar robot task {robot[j]!r} has similarity {sim[i, j]:.3f} < threshold {config.threshold:g}"
        else:
            why_h = {i: "the robot file has no tasks" for i in range(len(human))}
    used = {j for j, _ in matches.values()}
    why_r = {j: "no human task matched it" for j in range(len(robot)) if j not in used}
    return matches, why_h, why_r


def _round_robin(n_h: int, n_r: int, all_combinations: bool) -> list[tuple[int, int]]:
    """(human, robot) positions within one task: every clip at least once (or the full product)."""
    if all_combinations:
        return [(a, b) for a in range(n_h) for b in range(n_r)]
    return [(k % n_h, k % n_r) for k in range(max(n_h, n_r))]


def _domain_file(path: str | os.PathLike, domain: str) -> PairsFile:
    check_valid(path)
    pf = PairsFile(path)
    if pf.num_clips(domain) == 0:
        raise HRAlignError(f"{path}: has no {domain} clips (expected the {domain} file of the two)")
    return pf


def pair_files(human_path: str | os.PathLike, robot_path: str | os.PathLike, out: str | os.PathLike,
               config: PairingConfig | None = None, embed: Embed | None = None,
               overwrite: bool = False) -> PairingReport:
    """Write ``out`` with the human clips of ``human_path`` paired to the robot clips of ``robot_path``.

    Only clips of matched tasks are written (each once, with its actions/state and per-clip split).
    A pair's split is the robot clip's ``clip_split`` (else the human clip's; none when neither file
    has one). The report is also saved as JSON beside ``out`` (:func:`report_path`).
    """
    cfg = config or PairingConfig()
    check_not_an_input(out, [human_path, robot_path])
    report_file = report_path(out)
    check_not_an_input(report_file, [human_path, robot_path])
    if report_file.is_dir():
        raise HRAlignError(f"{report_file}: is a directory, expected the pairing report's file name (beside --out)")
    hf, rf = _domain_file(human_path, "human"), _domain_file(robot_path, "robot")
    if Path(out).exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    h_tasks = sorted(set(hf.clip_tasks("human").tolist()))
    r_tasks = sorted(set(rf.clip_tasks("robot").tolist()))
    h_text, r_text = [hf.tasks[t] for t in h_tasks], [rf.tasks[t] for t in r_tasks]
    matches, why_h, why_r = match_tasks(h_text, r_text, cfg, embed)
    h_clips = {t: np.flatnonzero(hf.clip_tasks("human") == t).tolist() for t in h_tasks}
    r_clips = {t: np.flatnonzero(rf.clip_tasks("robot") == t).tolist() for t in r_tasks}
    report = PairingReport(out=str(out), by=cfg.by, threshold=cfg.threshold if cfg.by == "embedding" else None)
    for i, reason in why_h.items():
        report.dropped.append({"domain": "human", "task": h_text[i], "clips": len(h_clips[h_tasks[i]]), "reason": reason})
    for j, reason in why_r.items():
        report.dropped.append({"domain": "robot", "task": r_text[j], "clips": len(r_clips[r_tasks[j]]), "reason": reason})
    if not matches:
        raise HRAlignError(f"no human task of {human_path} matched a robot task of {robot_path} (by {cfg.by}"
                           + (f", threshold {cfg.threshold:g}" if cfg.by == "embedding" else "") + "); nothing written")
    h_split, r_split = hf.clip_split("human"), rf.clip_split("robot")
    with PairsWriter(out, compression=cfg.compression, overwrite=overwrite) as w:
        w.set_attr("pairing", json.dumps({"human": str(human_path), "robot": str(robot_path), **asdict(cfg)}))
        for j in sorted({j for j, _ in matches.values()}):  # robot task order
            instruction = r_text[j]
            robots = [_copy_clip(w, rf, "robot", c, instruction, r_split) for c in r_clips[r_tasks[j]]]
            matched = sorted(i for i, (jj, _) in matches.items() if jj == j)
            sources = [c for i in matched for c in h_clips[h_tasks[i]]]  # human clips of every task matched to j
            humans = [_copy_clip(w, hf, "human", c, instruction, h_split) for c in sources]
            pairs = _round_robin(len(humans), len(robots), cfg.all_combinations)
            for a, b in pairs:
                rc, hc = r_clips[r_tasks[j]][b], sources[a]
                split = int(r_split[rc]) if r_split is not None else (int(h_split[hc]) if h_split is not None else None)
                w.add_pair(humans[a], robots[b], split=split)
            report.matched.append({"robot_task": instruction, "robot_clips": len(robots), "human_clips": len(humans),
                                   "pairs": len(pairs),
                                   "human_tasks": [{"task": h_text[i], "clips": len(h_clips[h_tasks[i]]),
                                                    "similarity": matches[i][1]} for i in matched]})
            report.pairs += len(pairs)
        try:  # before the output is renamed into place: a report that cannot be written leaves no --out
            write_text_atomic(report_file, json.dumps(asdict(report), indent=2))
        except OSError as e:
            raise HRAlignError(f"{report_file}: cannot write the pairing report ({e.strerror or e}); nothing written") from e
    return report


def _copy_clip(w: PairsWriter, pf: PairsFile, domain: str, clip: int, instruction: str,
               clip_split: np.ndarray | None) -> int:
    """Append one clip of ``pf`` (frames, actions, state, split) to ``w``; one clip in memory."""
    extra = {name: pf.read_clip(domain, clip, name=name) for name in S.PER_FRAME_OPTIONAL if pf.has(domain, name)}
    return w.add_clip(domain, pf.read_clip(domain, clip), instruction, **extra,
                      split=None if clip_split is None else int(clip_split[clip]))
