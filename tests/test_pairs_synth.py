"""The procedural demo set: deterministic, frame-aligned, consistent actions, a real appearance gap."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from hralign.errors import HRAlignError
from hralign.metrics import knn_accuracy
from hralign.pairs import PairsFile
from hralign.pairs.synth import SYNTH_TASKS, SynthConfig, make_episode, synthesize
from hralign.pairs.validate import validate


def _content_hash(path) -> str:
    m = hashlib.sha256()
    with h5py.File(path, "r") as h:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                m.update(name.encode())
                m.update(obj[()].tobytes() if obj.dtype.kind != "O" else repr(obj.asstr()[()].tolist()).encode())
        h.visititems(visit)
    return m.hexdigest()


def test_same_seed_same_content_other_seed_differs(tiny_pairs, tmp_path):
    cfg = SynthConfig(num_tasks=4, pairs_per_task=3, frames=8, image_size=32, seed=0)  # tiny_pairs' config
    again = synthesize(tmp_path / "again.h5", cfg)
    other = synthesize(tmp_path / "other.h5", SynthConfig(num_tasks=4, pairs_per_task=3, frames=8, image_size=32, seed=1))
    assert _content_hash(again) == _content_hash(tiny_pairs)
    assert _content_hash(other) != _content_hash(tiny_pairs)


def test_layout_tasks_split_and_alignment(small_pairs):
    assert validate(small_pairs) == []
    pf = PairsFile(small_pairs)
    assert pf.tasks == [t[1] for t in SYNTH_TASKS[:8]]
    assert pf.num_pairs == 32 and pf.num_clips("human") == 32 and pf.num_clips("robot") == 32
    assert (pf.clip_lengths("human") == 12).all() and (pf.clip_lengths("robot") == 12).all()
    assert pf.frame_shape("human") == (48, 48, 3)
    tasks = pf.clip_tasks("human")[pf.pairs[:, 0]]
    assert (tasks == pf.clip_tasks("robot")[pf.pairs[:, 1]]).all()
    # stratified stored split: every task has both train and validation pairs
    for k in range(8):
        assert set(pf.split[tasks == k].tolist()) == {0, 1}
    assert pf.has("robot", "actions") and pf.has("robot", "state") and not pf.has("human", "actions")


def test_actions_are_state_differences(small_pairs):
    pf = PairsFile(small_pairs)
    for c in range(0, pf.num_clips("robot"), 5):
        a, s = pf.read_clip("robot", c, name="actions"), pf.read_clip("robot", c, name="state")
        assert a.shape == (12, 4) and s.shape == (12, 8)
        np.testing.assert_allclose(a[:-1, :3], np.diff(s[:, :3], axis=0), atol=1e-6)
        np.testing.assert_array_equal(a[:, 3], s[:, 3])  # gripper command = gripper state


@pytest.mark.parametrize("task", range(len(SYNTH_TASKS)))
def test_each_task_moves_the_block_its_own_way(task):
    ep = make_episode(task, 16, np.random.default_rng(task))
    _, _, kind, (ux, uy) = SYNTH_TASKS[task]
    d_obj = ep.obj[-1] - ep.obj[0]
    if kind == "push":
        u = np.array([ux, uy]) / np.hypot(ux, uy)
        assert d_obj[:2] @ u > 0.15 and abs(d_obj[:2] @ np.array([-u[1], u[0]])) < 1e-6
    elif kind == "lift":
        assert d_obj[2] > 0.3 and ep.gripper[-1] == 1 and ep.gripper[0] == 0
    else:
        assert np.sign(ep.angle[0] - ep.angle[-1]) == ux and abs(ep.angle[-1] - ep.angle[0]) > 1.0
    assert np.all(np.abs(ep.effector[:, :2] - 0.5) < 0.5)  # the effector stays on the table


def _clip_features(pf, domain, clips):
    feats = []
    for c in clips:
        x = pf.read_clip(domain, int(c)).astype(np.float32) / 255.0
        feats.append(np.concatenate([x[len(x) // 2].ravel(), (x[-1] - x[0]).ravel()]))
    return np.stack(feats)


def test_appearance_gap_is_real_but_motion_is_visible(small_pairs):
    """Raw pixels must not match robot clips to human clips of the same task (the gap HR-Align
    closes), while within one domain the motion alone already tells tasks apart."""
    pf = PairsFile(small_pairs)
    y = pf.clip_tasks("human")[pf.pairs[:, 0]]
    H = _clip_features(pf, "human", pf.pairs[:, 0])
    R = _clip_features(pf, "robot", pf.pairs[:, 1])
    cross = knn_accuracy(R, y, H, y)
    half = H.shape[1] // 2
    # leave-one-out 1-NN on the robot's motion images (last - first frame)
    motion = R[:, half:] / np.linalg.norm(R[:, half:], axis=1, keepdims=True)
    sim = motion @ motion.T
    np.fill_diagonal(sim, -np.inf)
    within = float((y[sim.argmax(1)] == y).mean())
    assert cross < 0.3, cross  # chance is 1/8
    assert within > 0.5, within


def test_robot_image_size_and_config_checks(tmp_path):
    path = synthesize(tmp_path / "r.h5", SynthConfig(num_tasks=2, pairs_per_task=1, frames=3, image_size=16,
                                                     robot_image_size=24, val_fraction=0.0))
    pf = PairsFile(path)
    assert pf.frame_shape("robot") == (24, 24, 3) and pf.split is None
    for bad in (dict(num_tasks=0), dict(num_tasks=99), dict(frames=1), dict(image_size=4), dict(noise=-1.0),
                dict(val_fraction=1.0), dict(seed=-1), dict(compression="zip")):
        with pytest.raises(HRAlignError, match=f"`{next(iter(bad))}`"):
            SynthConfig(**bad)
    with pytest.raises(HRAlignError, match="exists"):
        synthesize(path, SynthConfig(num_tasks=1, pairs_per_task=1, frames=2, image_size=16))
