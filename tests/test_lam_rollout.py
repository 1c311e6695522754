"""World-model rollout through the LAM's FDM: copy identity, autoregressive feedback, batching, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.model import LatentActionModel
from hralign.lam.rollout import action_vectors, infer_actions, rollout

SIZE = 16


def _model(trained_like: bool = True, seed: int = 0) -> LatentActionModel:
    torch.manual_seed(seed)
    cfg = LAMConfig(image_size=SIZE, patch_size=8, gap=2, codebook_size=4, tokens=2, code_dim=4, idm="conv",
                    dim=16, heads=2, idm_depth=1, fdm_depth=1, conv_channels=4)
    m = LatentActionModel(cfg).eval()
    if trained_like:  # the FDM head is zero-initialised (copy baseline); give it weights so actions matter
        with torch.no_grad():
            m.fdm.out.weight.normal_(0, 0.2)
            m.fdm.out.bias.normal_(0, 0.02)
    return m


def _frames(b: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, SIZE, SIZE, 3), dtype=np.uint8)


def test_untrained_fdm_rollout_is_the_copy_baseline():
    m = _model(trained_like=False)
    start = _frames(2)
    r = rollout(m, start, torch.tensor([[[0, 1], [2, 3], [1, 1]]] * 2))
    assert r.frames.shape == (2, 4, 3, SIZE, SIZE)
    u8 = r.uint8()
    for s in range(4):
        np.testing.assert_array_equal(u8[:, s], start)


def test_rollout_feeds_predictions_back_step_by_step():
    m = _model()
    start = _frames(1)
    codes = torch.tensor([[[0, 1], [3, 2], [1, 0]]])
    r = rollout(m, start, codes)
    # by hand: tokens of the start, then FDM(previous prediction, action s), clamped to [0, 1]
    x = m.pixel_tokens(torch.from_numpy(start).permute(0, 3, 1, 2).float() / 255)
    book = m.quantizer.codebook.detach()
    with torch.no_grad():
        for s in range(3):
            x = m.fdm(x, book[codes[:, s]]).clamp(0, 1)
            got = m.pixel_tokens(r.frames[:, s + 1])
            torch.testing.assert_close(got, x, atol=1e-5, rtol=0)
        # feedback matters: action 1 applied to the start frame is not step 2 of the rollout
        direct = m.fdm(m.pixel_tokens(r.frames[:, 0]), book[codes[:, 1]]).clamp(0, 1)
    assert (direct - m.pixel_tokens(r.frames[:, 2])).abs().max() > 1e-3
    assert torch.equal(r.codes, codes)


def test_batched_rollout_equals_one_at_a_time_and_broadcasts_one_sequence():
    m = _model()
    start = _frames(3, seed=1)
    codes = torch.randint(0, 4, (3, 4, 2), generator=torch.Generator().manual_seed(0))
    batched = rollout(m, start, codes).frames
    for i in range(3):
        torch.testing.assert_close(batched[i:i + 1], rollout(m, start[i:i + 1], codes[i:i + 1]).frames,
                                   atol=1e-5, rtol=0)
    shared = rollout(m, start, codes[:1]).frames  # one sequence for every start frame
    torch.testing.assert_close(shared[2:3], rollout(m, start[2:3], codes[:1]).frames, atol=1e-5, rtol=0)


def test_continuous_latents_snap_to_codes_unless_told_not_to():
    m = _model()
    start = _frames(1, seed=2)
    codes = torch.tensor([[[1, 2], [0, 3]]])
    book = m.quantizer.codebook.detach()
    near = book[codes] + 0.01 * torch.randn(1, 2, 2, 4, generator=torch.Generator().manual_seed(0))
    flat = near.reshape(1, 2, 8)  # (B, S, tokens*code_dim), as labels.h5 stores latents
    by_codes = rollout(m, start, codes).frames
    snapped = rollout(m, start, flat)
    torch.testing.assert_close(snapped.frames, by_codes, atol=1e-6, rtol=0)
    assert torch.equal(snapped.codes, codes)
    raw = rollout(m, start, flat, quantize=False).frames
    assert (raw - by_codes).abs().max() > 0
    vec, _ = action_vectors(m, flat[0], quantize=False)  # no batch axis is fine too
    torch.testing.assert_close(vec[0], near[0])


def test_infer_actions_matches_the_lam_codes_of_frame_pairs():
    m = _model()
    frames = _frames(4, seed=3)
    codes, latents = infer_actions(m, frames)
    pairs = np.stack([frames[:-1], frames[1:]], 1)
    assert torch.equal(codes, m.codes(pairs))
    assert latents.shape == (3, 8)


@pytest.mark.parametrize("bad, message", [
    (lambda m: rollout(m, np.zeros((1, 24, 24, 3), np.uint8), [[[0, 0]]]), "trained on 16x16"),
    (lambda m: rollout(m, _frames(1), [[[0, 4]]]), "codebook has 4 entries"),
    (lambda m: rollout(m, _frames(1), [[[0, 0, 0]]]), "(B, steps, 2)"),
    (lambda m: rollout(m, _frames(2), torch.zeros(3, 1, 2, dtype=torch.long)), "2 start frames but 3"),
    (lambda m: rollout(m, torch.rand(1, 3, SIZE, SIZE) * 2, [[[0, 0]]]), "should be in [0, 1]"),
    (lambda m: rollout(m, _frames(1), torch.zeros(1, 1, 5)), "continuous latent actions"),
    (lambda m: infer_actions(m, _frames(1)), "at least 2 frames"),
])
def test_bad_rollout_input_is_one_clear_error(bad, message):
    with pytest.raises(HRAlignError) as e:
        bad(_model())
    assert message in str(e.value) and "\n" not in str(e.value)
