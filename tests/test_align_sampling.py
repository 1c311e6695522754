"""Step sampling is a pure function of (seed, step): resumable and identical across paths."""

import numpy as np

from hralign.align.sampling import positions_to_indices, relative_positions, step_batch, step_positions


def test_step_batch_is_deterministic_and_covers_an_epoch_without_repeats():
    train = np.arange(10, 30)
    a = step_batch(train, 5, seed=3, step=2)
    assert np.array_equal(a, step_batch(train, 5, seed=3, step=2))
    epoch = np.concatenate([step_batch(train, 5, seed=3, step=s) for s in range(4)])
    assert sorted(epoch.tolist()) == train.tolist()
    assert not np.array_equal(epoch, np.concatenate([step_batch(train, 5, seed=3, step=s) for s in range(4, 8)]))


def test_positions_are_stratified_and_map_into_each_clip():
    pos = step_positions(3, 5, seed=0, step=7)
    seg = np.floor(pos * 5)
    assert np.array_equal(seg, np.tile(np.arange(5), (3, 1)))  # one draw per segment
    idx = positions_to_indices(pos, np.array([5, 16, 3]))
    assert (idx >= 0).all() and (idx < np.array([5, 16, 3])[:, None]).all()
    assert np.array_equal(idx[0], np.arange(5))  # a 5-frame clip gives every frame once
    centres = relative_positions(1, 4, None)
    assert np.allclose(centres, [[0.125, 0.375, 0.625, 0.875]])


def test_feature_cache_key_changes_with_encoder_file_stage_and_clips():
    from hralign.align.features import cache_key

    spec = {"name": "r3m-resnet18", "image_size": 64, "weights": "w.pt", "sha256": "aa"}
    base = cache_key(spec, "f" * 64, "layer4", [0, 1], [0, 1])
    assert base == cache_key(dict(spec), "f" * 64, "layer4", [0, 1], [0, 1])
    assert base != cache_key({**spec, "sha256": "bb"}, "f" * 64, "layer4", [0, 1], [0, 1])  # new weights
    assert base != cache_key(spec, "e" * 64, "layer4", [0, 1], [0, 1])  # edited pairs file
    assert base != cache_key(spec, "f" * 64, "layer3", [0, 1], [0, 1])  # adapter moved
    assert base != cache_key(spec, "f" * 64, "layer4", [0, 1], [0, 2])  # other clips
    assert base != cache_key(spec, "f" * 64, "layer4", [0, 1], [0, 1], gap=2)  # frame pairs of a LAM
