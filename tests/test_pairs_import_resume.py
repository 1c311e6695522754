"""The pipeline's guards: resume after a source changed, temporaries of killed runs, non-finite actions."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from import_fixtures import frame_img, write_mp4

from hralign.atomic import stale_temporaries
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.importers import pipeline as P
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment
from hralign.pairs.validate import validate


def _videos(d: Path, n: int = 3) -> ImportPlan:
    clips = []
    for i in range(n):
        write_mp4(d / f"{i}.mp4", [frame_img(10 * i + t) for t in range(6)])
        clips.append(ClipSource(f"c{i}", "robot", "open the drawer", VideoSegment(d / f"{i}.mp4")))
    return ImportPlan(clips=clips)


def _cfg(**kw) -> P.ImportConfig:
    return P.ImportConfig(**{"image_size": 16, "workers": 1, "compression": None, **kw})


def _killed_import(plan: ImportPlan, out: Path, monkeypatch, after: int = 1) -> None:
    """An import that dies (as a kill would) after ``after`` clips are in the output."""
    real, calls = P._assemble_clip, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(P, "_assemble_clip", dying)
    with pytest.raises(KeyboardInterrupt):
        P.run_import(plan, out, _cfg(), progress=False)
    monkeypatch.setattr(P, "_assemble_clip", real)


def test_resume_refuses_a_source_replaced_in_place(tmp_path, monkeypatch):
    plan, out = _videos(tmp_path / "v"), tmp_path / "o.h5"
    _killed_import(plan, out, monkeypatch)
    video = tmp_path / "v" / "0.mp4"
    write_mp4(video, [frame_img(200 + t) for t in range(9)])  # same path, other content
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # whatever the filesystem's clock granularity
    with pytest.raises(HRAlignError, match=rf"^{video}: source file changed since the partial import .*--overwrite"):
        P.run_import(plan, out, _cfg(resume=True), progress=False)
    assert not out.exists()
    rep = P.run_import(plan, out, _cfg(overwrite=True), progress=False)  # starts over: the new video's 9 frames
    assert rep.reused == 0 and PairsFile(out).clip_lengths("robot").tolist() == [9, 6, 6]


def test_resume_with_unchanged_sources_reuses_and_removes_stale_temporaries(tmp_path, monkeypatch):
    plan, out = _videos(tmp_path / "v"), tmp_path / "o.h5"
    _killed_import(plan, out, monkeypatch)
    # a SIGKILL leaves the writer's temporary file; plant two more of this output and some that are not its own
    mine = [tmp_path / ".o.h5.ab12_x9z.tmp", tmp_path / ".o.h5.00000000.tmp"]
    others = [tmp_path / ".o.h5.old.tmp", tmp_path / ".o.h5.abcdefgh.h5.tmp", tmp_path / ".p.h5.ab12_x9z.tmp",
              tmp_path / "o.h5.ab12_x9z.tmp", tmp_path / ".o.h5.ABCDEFGH.tmp"]
    for p in mine + others:
        p.write_bytes(b"x")
    (tmp_path / ".o.h5.dir12345.tmp").mkdir()  # a directory is never a writer's temporary file
    assert stale_temporaries(out) == sorted(mine)
    rep = P.run_import(plan, out, _cfg(resume=True), progress=False)
    assert rep.reused == 2 and validate(out) == []
    assert not any(p.exists() for p in mine) and all(p.exists() for p in others)
    assert stale_temporaries(out) == [] and (tmp_path / ".o.h5.dir12345.tmp").is_dir()


def test_overwrite_removes_stale_temporaries(tmp_path):
    plan, out = _videos(tmp_path / "v", 1), tmp_path / "o.h5"
    stale = tmp_path / ".o.h5.k1ll3d00.tmp"
    stale.write_bytes(b"x")
    P.run_import(plan, out, _cfg(overwrite=True), progress=False)
    assert not stale.exists() and validate(out) == []


def test_source_files_records_size_and_mtime(tmp_path):
    plan = _videos(tmp_path, 2)
    plan.clips.append(ClipSource("gone", "robot", "t", VideoSegment(tmp_path / "missing.mp4")))
    found = P.source_files(plan)
    st = (tmp_path / "1.mp4").stat()
    assert found[str(tmp_path / "1.mp4")] == [st.st_size, st.st_mtime_ns]
    assert found[str(tmp_path / "missing.mp4")] is None and len(found) == 3


@dataclass(frozen=True)
class _Arrays:
    """Frames from memory (workers=1: nothing to pickle)."""

    n: int

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([frame_img(t, 16, 16) for t in range(self.n)]), np.arange(self.n) / 10.0


def _clip(key: str, actions: np.ndarray) -> ClipSource:
    return ClipSource(key, "robot", "push", _Arrays(len(actions)), actions=actions, state=np.zeros((len(actions), 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300])  # 1e300 overflows to inf in the stored float32
def test_non_finite_actions_are_refused_naming_clip_and_row(tmp_path, bad):
    a = np.zeros((5, 3))
    a[3, 1] = bad
    plan = ImportPlan(clips=[_clip("episode_000000", np.ones((4, 3))), _clip("episode_000001", a)])
    with pytest.raises(HRAlignError, match=r"^clip episode_000001: actions row 3 \(of 5\) has (nan|inf) in column 1 "
                                           r"\(1 rows non-finite\), expected finite numbers \(pass --skip-bad"):
        P.run_import(plan, tmp_path / "o.h5", _cfg(image_size=None), progress=False)
    assert list(tmp_path.iterdir()) == [P.partial_dir(tmp_path / "o.h5")]  # no output, no temporary file
    rep = P.run_import(plan, tmp_path / "o.h5", _cfg(image_size=None, skip_bad=True, resume=True), progress=False)
    assert rep.clips["robot"] == 1 and rep.skipped[0][0] == "episode_000001"
    assert validate(tmp_path / "o.h5") == []


def test_non_finite_rows_name_the_file_they_came_from(tmp_path):
    """The pipeline's backstop names the clip's source file: the importer's (a parquet, an HDF5 file) when it
    gives one, else the frames' file."""
    a = np.zeros((5, 3))
    a[2, 0] = np.nan
    src = tmp_path / "data" / "chunk-000" / "file-000.parquet"
    plan = ImportPlan(clips=[_clip("episode_000000", np.ones((4, 3))),
                             replace(_clip("episode_000001", a), origin=src)])
    with pytest.raises(HRAlignError, match=rf"^clip episode_000001: {re.escape(str(src))}: actions row 2 \(of 5\) has nan"):
        P.run_import(plan, tmp_path / "o.h5", _cfg(image_size=None), progress=False)
    state = np.zeros((4, 2))
    state[1, 1] = np.inf
    video = tmp_path / "robot.mp4"
    write_mp4(video, [frame_img(t, 16, 16) for t in range(4)])
    bad = ClipSource("cam_0", "robot", "push", VideoSegment(video), actions=np.ones((4, 3)), state=state)
    with pytest.raises(HRAlignError, match=rf"^clip cam_0: {re.escape(str(video))}: state row 1 \(of 4\) has inf"):
        P.run_import(ImportPlan(clips=[bad]), tmp_path / "p.h5", _cfg(image_size=None), progress=False)


def test_check_finite_rows():
    P.check_finite_rows("state", np.zeros((3, 2), np.float32))
    rows = np.zeros((4, 2), np.float32)
    rows[2:, 0] = -np.inf
    with pytest.raises(HRAlignError, match=r"^state row 2 \(of 4\) has -inf in column 0 \(2 rows non-finite\)"):
        P.check_finite_rows("state", rows)
