"""The one action probe (hralign.metrics.action_probe_r2): latents that encode the action score near 1,
shuffled latents near 0, and the proprio floor is the same probe on the state (also through lam eval)."""

from __future__ import annotations

import numpy as np
import pytest

from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2


def _synthetic(n_clips: int = 30, frames: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_clips), frames)
    state = rng.normal(size=(len(groups), 3))
    own = rng.normal(size=(len(groups), 2))  # the part of the action proprio does not tell
    actions = np.hstack([state[:, :1] + 0.05 * rng.normal(size=(len(groups), 1)), own])  # column 0 follows proprio
    latents = np.hstack([actions, 0.1 * rng.normal(size=(len(groups), 5))]) @ rng.normal(size=(8, 8))
    return latents, actions, state, groups, rng


def test_probe_reads_latents_that_encode_the_action_and_not_shuffled_ones():
    latents, actions, state, groups, rng = _synthetic()
    good = action_probe_r2(latents, actions, groups, proprio=state)
    shuffled = action_probe_r2(latents[rng.permutation(len(latents))], actions, groups, proprio=state)
    assert good["action_probe_r2"] > 0.95 and shuffled["action_probe_r2"] < 0.1
    assert good["action_probe_r2_shuffled"] < 0.1  # the built-in control: shuffled targets
    # the floor: proprio tells column 0 only (R^2 ~1 there, ~0 on the other two: mean ~1/3)
    assert good["action_probe_r2_proprio"] == pytest.approx(1 / 3, abs=0.05)
    assert good["action_probe_r2_proprio"] == shuffled["action_probe_r2_proprio"]  # it never reads the latents
    assert good["action_probe_r2_with_proprio"] > 0.95
    assert shuffled["action_probe_r2_with_proprio"] == pytest.approx(good["action_probe_r2_proprio"], abs=0.05)
    assert good["folds"] == 5 and good["clips"] == 30


def test_probe_refuses_bad_proprio():
    latents, actions, state, groups, _ = _synthetic(n_clips=4, frames=3)
    with pytest.raises(HRAlignError, match="`proprio` should have shape \\(12, n_state\\)"):
        action_probe_r2(latents, actions, groups, proprio=state[:, 0])


def test_lam_probe_labels_adds_the_proprio_floor(small_pairs):
    from hralign.lam.evaluate import gap_targets, probe_labels
    from hralign.pairs import PairsFile

    pf = PairsFile(small_pairs)
    lengths = pf.clip_lengths("robot")
    clips = np.concatenate([np.full(n - 1, c) for c, n in enumerate(lengths)])
    ts = np.concatenate([np.arange(n - 1) for n in lengths])
    y = gap_targets(pf, "robot", clips, ts, 1)
    latents = y + 1e-3 * np.random.default_rng(0).normal(size=y.shape)  # latents that encode the action
    labels = {"attrs": {"gap": 1}, "robot": {"clip": clips, "t": ts, "latents": latents}}
    plain = probe_labels(labels, pf)
    res = probe_labels(labels, pf, proprio=True)
    assert "action_probe_r2_proprio" not in plain and res["action_probe_r2"] == plain["action_probe_r2"] > 0.95
    state = np.stack([pf.read_clip("robot", int(c), name="state")[int(t)] for c, t in zip(clips, ts)])
    floor = action_probe_r2(state, y, clips)["action_probe_r2"]
    assert res["action_probe_r2_proprio"] == pytest.approx(floor)  # the state at each row's first frame
