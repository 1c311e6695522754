"""PairsDataset sampling (aligned random, uniform, seeded), splits, optional arrays, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile, PairsWriter
from hralign.pairs.dataset import PairsDataset, sample_positions
from hralign.pairs.split import make_split, pair_tasks, split_pairs


def test_item_contents_match_the_file(tiny_pairs):
    ds = PairsDataset(tiny_pairs, frames=4, split="all", sampling="random", seed=3)
    pf = PairsFile(tiny_pairs)
    item = ds[5]
    assert item["human"].dtype == torch.uint8 and item["human"].shape == (4, 32, 32, 3)
    assert item["robot_actions"].shape == (4, 4) and item["robot_state"].shape == (4, 8)
    assert item["robot_actions"].dtype == torch.float32 and "human_actions" not in item
    hc, rc = pf.pairs[item["pair"]]
    assert (item["human_clip"], item["robot_clip"]) == (hc, rc)
    np.testing.assert_array_equal(item["human"].numpy(), pf.read_clip("human", hc)[item["human_frames"].numpy()])
    np.testing.assert_array_equal(item["robot"].numpy(), pf.read_clip("robot", rc)[item["robot_frames"].numpy()])
    np.testing.assert_array_equal(item["robot_state"].numpy(), pf.read_clip("robot", rc, name="state")[item["robot_frames"].numpy()])
    assert item["task"] == pf.clip_tasks("human")[hc] and item["instruction"] == pf.tasks[item["task"]]


def test_random_sampling_is_aligned_sorted_seeded_and_changes_with_epoch(tiny_pairs):
    ds = PairsDataset(tiny_pairs, frames=5, split="all", seed=0)
    draws = []
    for i in range(len(ds)):
        it = ds[i]
        h, r = it["human_frames"].numpy(), it["robot_frames"].numpy()
        assert (h == r).all()  # frame-aligned pairs get the same positions
        assert (np.diff(h) > 0).all() and h.min() >= 0 and h.max() < 8  # sorted, distinct (8 >= 5 frames)
        draws.append(h)
    again = PairsDataset(tiny_pairs, frames=5, split="all", seed=0)
    assert all((again[i]["human_frames"].numpy() == d).all() for i, d in enumerate(draws))
    ds.set_epoch(1)
    assert any((ds[i]["human_frames"].numpy() != d).any() for i, d in enumerate(draws))
    other = PairsDataset(tiny_pairs, frames=5, split="all", seed=1)
    assert any((other[i]["human_frames"].numpy() != d).any() for i, d in enumerate(draws))


def test_uniform_sampling_is_evenly_spaced_and_fixed(tiny_pairs):
    ds = PairsDataset(tiny_pairs, frames=3, split="all", sampling="uniform", seed=0)
    for e in (0, 5):
        ds.set_epoch(e)
        assert ds[0]["human_frames"].tolist() == [0, 4, 7] == ds[0]["robot_frames"].tolist()


def test_positions_map_across_clip_lengths():
    rng = np.random.default_rng(0)
    h, r = sample_positions((10, 20), 4, "random", rng)
    assert (np.diff(h) > 0).all() and r.max() < 20
    np.testing.assert_array_equal(r, 2 * h + 1)  # same relative time: (k + 0.5) * 20 / 10
    h, r = sample_positions((3, 3), 6, "random", np.random.default_rng(0))  # shorter than T: sorted repeats
    assert (np.diff(h) >= 0).all() and (h == r).all() and h.max() < 3
    h, r = sample_positions((5, 9), 3, "uniform", None)
    assert h.tolist() == [0, 2, 4] and r.tolist() == [0, 4, 8]
    with pytest.raises(HRAlignError):
        sample_positions((4, 4), 2, "random", None)


def test_stored_split_wins_and_splits_partition(tiny_pairs):
    pf = PairsFile(tiny_pairs)
    train = PairsDataset(tiny_pairs, split="train")
    val = PairsDataset(tiny_pairs, split="val", val_fraction=0.5, split_by="task")  # stored /split wins
    assert set(train.indices) | set(val.indices) == set(range(pf.num_pairs))
    assert not set(train.indices) & set(val.indices)
    np.testing.assert_array_equal(val.indices, np.flatnonzero(pf.split == 1))
    tr, va = split_pairs(pf, val_fraction=0.5, by="task", use_file_split=False)
    tasks = pair_tasks(pf)
    assert not set(tasks[tr]) & set(tasks[va])  # by task: held-out tasks only in validation


def _no_split_file(tmp_path, tasks=4, per_task=5):
    path = tmp_path / "nosplit.h5"
    with PairsWriter(path) as w:
        for k in range(tasks):
            for _ in range(per_task):
                h = w.add_clip("human", np.full((3, 8, 8, 3), k, np.uint8), f"task {k}")
                r = w.add_clip("robot", np.full((4, 8, 8, 3), k, np.uint8), f"task {k}")
                w.add_pair(h, r)
    return path


def test_split_made_by_pair_or_task_when_file_has_none(tmp_path):
    path = _no_split_file(tmp_path)
    tasks = pair_tasks(PairsFile(path))
    tr, va = split_pairs(path, val_fraction=0.2, by="pair", seed=0)
    assert len(va) == 4 and sorted(tasks[va].tolist()) == [0, 1, 2, 3]  # one per task
    tr2, va2 = split_pairs(path, val_fraction=0.2, by="pair", seed=0)
    assert (va == va2).all()
    assert any((split_pairs(path, val_fraction=0.2, by="pair", seed=s)[1] != va).any() for s in range(1, 5))
    tr, va = split_pairs(path, val_fraction=0.25, by="task", seed=0)
    assert len(set(tasks[va].tolist())) == 1 and not set(tasks[va]) & set(tasks[tr])
    ds = PairsDataset(path, frames=2, split="val", split_by="task", val_fraction=0.25)
    assert len(ds) == 5 and ds[0]["robot_frames"].max() < 4
    assert "robot_actions" not in ds[0]
    with pytest.raises(HRAlignError, match="has no pairs"):
        PairsDataset(path, split="val", val_fraction=0.0)
    with pytest.raises(HRAlignError, match="at least 2 tasks"):
        make_split(np.zeros(5, np.int64), 0.5, by="task")


@pytest.mark.parametrize("kwargs,field", [(dict(frames=0), "frames"), (dict(split="test"), "split"),
                                          (dict(sampling="dense"), "sampling"), (dict(split_by="clip"), "split_by"),
                                          (dict(val_fraction=1.5), "val_fraction")])
def test_bad_arguments(tiny_pairs, kwargs, field):
    with pytest.raises(HRAlignError, match=f"`{field}`"):
        PairsDataset(tiny_pairs, **kwargs)


def test_dataloader_with_workers_matches_in_process(tiny_pairs):
    ds = PairsDataset(tiny_pairs, frames=3, split="train", seed=7)
    ref = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    got = [b for b in loader]
    robot = torch.cat([b["robot"] for b in got])
    assert robot.shape == (len(ds), 3, 32, 32, 3)
    assert torch.equal(robot, torch.stack([r["robot"] for r in ref]))
    assert sum((b["instruction"] for b in got), []) == [r["instruction"] for r in ref]
