"""PairsWriter -> PairsFile round trip, atomic writes, lazy per-process handles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile, PairsWriter


def _clip(rng, t, h=12, w=10):
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rt.h5"
    hclips = [_clip(rng, t) for t in (3, 5, 4)]
    rclips = [_clip(rng, t, 8, 8) for t in (6, 2)]
    ractions = [rng.normal(size=(c.shape[0], 4)).astype(np.float32) for c in rclips]
    with PairsWriter(path, tasks=["open the drawer"], compression="gzip") as w:
        w.set_attr("source", "unit test")
        for c in hclips:
            w.add_clip("human", c, "open the drawer" if c.shape[0] != 4 else "close the drawer")
        for c, a in zip(rclips, ractions):
            w.add_clip("robot", c, 0, actions=a)
        w.add_pair(0, 0, split=0)
        w.add_pair(1, 1, split=1)
        w.add_pair(2, 0, split=0)
    pf = PairsFile(path)
    assert pf.tasks == ["open the drawer", "close the drawer"]
    assert pf.pairs.tolist() == [[0, 0], [1, 1], [2, 0]]
    assert pf.split.tolist() == [0, 1, 0]
    assert pf.domains == ("human", "robot")
    assert pf.num_clips("human") == 3 and pf.num_clips("robot") == 2
    assert pf.frame_shape("human") == (12, 10, 3) and pf.frame_shape("robot") == (8, 8, 3)
    assert pf.clip_starts("human").tolist() == [0, 3, 8]
    assert pf.clip_tasks("human").tolist() == [0, 0, 1]
    for i, c in enumerate(hclips):
        np.testing.assert_array_equal(pf.read_clip("human", i), c)
    np.testing.assert_array_equal(pf.read_clip("robot", 0, name="actions"), ractions[0])
    assert pf.has("robot", "actions") and not pf.has("human", "actions") and not pf.has("robot", "state")
    # selections: slice, dense indices, sparse indices (read frame by frame), unsorted with repeats
    np.testing.assert_array_equal(pf.read_clip("human", 1, slice(1, 5, 2)), hclips[1][1:5:2])
    np.testing.assert_array_equal(pf.read_clip("robot", 0, [4, 0, 4, 1]), rclips[0][[4, 0, 4, 1]])
    np.testing.assert_array_equal(pf.read_frames("human", 2, 6), np.concatenate(hclips)[2:6])
    with pytest.raises(HRAlignError, match="outside"):
        pf.read_clip("human", 0, [0, 3])
    with pytest.raises(HRAlignError, match="out of range"):
        pf.read_clip("robot", 2)
    import h5py

    with h5py.File(path) as h:
        assert h.attrs["source"] == "unit test"


def test_sparse_read_of_long_clip(tmp_path):
    rng = np.random.default_rng(1)
    clip = _clip(rng, 200, 4, 4)
    with PairsWriter(tmp_path / "long.h5") as w:
        w.add_clip("human", clip, "t")
    pf = PairsFile(tmp_path / "long.h5")
    idx = np.array([3, 150, 199, 3])
    np.testing.assert_array_equal(pf.read_clip("human", 0, idx), clip[idx])


@pytest.mark.parametrize("compression", [None, "blosc"])
def test_read_clip_selections_match_numpy(tmp_path, compression):
    """Every selection kind adapt and the datasets use gives numpy's answer, raw chunks (read
    chunk by chunk) and blosc ones (through HDF5's filter) alike."""
    rng = np.random.default_rng(2)
    clips = [_clip(rng, t, 6, 5) for t in (8, 30)]
    with PairsWriter(tmp_path / "s.h5", compression=compression) as w:
        for c in clips:
            w.add_clip("human", c, "t", state=rng.normal(size=(len(c), 3)).astype(np.float32))
    pf = PairsFile(tmp_path / "s.h5")
    cases = [np.arange(8), [2, 3, 4], [0, 2, 3, 5, 7], [1, 1, 4, 6, 6], [7, 0, 3, 3], [5], np.array([29, 0, 13])]
    for c, clip in enumerate(clips):
        for idx in cases:
            if max(idx) < len(clip):
                np.testing.assert_array_equal(pf.read_clip("human", c, idx), clip[np.asarray(idx)])
    state = pf.read_clip("human", 1, name="state")
    np.testing.assert_array_equal(pf.read_clip("human", 1, [9, 2, 2], name="state"), state[[9, 2, 2]])
    assert pf.read_clip("human", 0, []).shape == (0, 6, 5, 3)
    with pytest.raises(HRAlignError, match="1-D"):
        pf.read_clip("human", 0, np.zeros((2, 2), np.int64))
    with pytest.raises(HRAlignError, match="outside"):
        pf.read_clip("human", 0, [-1, 2])


def test_writer_is_atomic_and_refuses_to_clobber(tmp_path):
    path = tmp_path / "a.h5"
    with pytest.raises(RuntimeError):
        with PairsWriter(path) as w:
            w.add_clip("human", np.zeros((2, 4, 4, 3), np.uint8), "t")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []  # no final file, no temporary file
    with PairsWriter(path) as w:
        w.add_clip("human", np.zeros((2, 4, 4, 3), np.uint8), "t")
    with pytest.raises(HRAlignError, match="exists"):
        PairsWriter(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


@pytest.mark.parametrize("bad", [np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 4, 4), np.uint8),
                                 np.zeros((0, 4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)])
def test_writer_rejects_bad_frames(tmp_path, bad):
    w = PairsWriter(tmp_path / "b.h5")
    with pytest.raises(HRAlignError):
        w.add_clip("human", bad, "t")
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_inconsistent_input(tmp_path):
    w = PairsWriter(tmp_path / "c.h5")
    w.add_clip("robot", np.zeros((2, 4, 4, 3), np.uint8), "t", actions=np.zeros((2, 3)))
    with pytest.raises(HRAlignError, match="no actions"):
        w.add_clip("robot", np.zeros((2, 4, 4, 3), np.uint8), "t")
    with pytest.raises(HRAlignError, match="shape"):
        w.add_clip("robot", np.zeros((2, 5, 4, 3), np.uint8), "t", actions=np.zeros((2, 3)))
    with pytest.raises(HRAlignError, match="human clip"):
        w.add_pair(0, 0)
    with pytest.raises(HRAlignError, match="reserved"):
        w.set_attr("hralign_format", "x")
    w.abort()


def test_handle_reopens_after_pickle(tiny_pairs):
    pf = PairsFile(tiny_pairs)
    first = pf.read_clip("human", 0)
    clone = pickle.loads(pickle.dumps(pf))  # what a DataLoader worker receives
    assert clone._h5 is None
    np.testing.assert_array_equal(clone.read_clip("human", 0), first)
    pf.close()
    np.testing.assert_array_equal(pf.read_clip("human", 0), first)  # reopens on demand
