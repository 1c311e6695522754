"""hralign.crop: the one random-resized-crop definition (torch or numpy generator, same rule)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hralign.crop import crop_params, random_resized_crop
from hralign.errors import HRAlignError


@pytest.mark.parametrize("make_rng", [lambda s: torch.Generator().manual_seed(s), np.random.default_rng])
def test_params_inside_the_image_and_within_scale(make_rng):
    for seed in range(30):
        top, left, h, w = crop_params(40, 64, (0.3, 1.0), rng=make_rng(seed))
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 64
        assert 0.3 * 40 * 64 * 0.9 <= h * w <= 40 * 64
    a = crop_params(40, 64, (0.3, 1.0), rng=make_rng(5))
    assert a == crop_params(40, 64, (0.3, 1.0), rng=make_rng(5))  # seeded: repeatable


def test_fallback_is_a_centre_crop_at_the_nearest_ratio():
    # a 1 x 100 strip: no try fits a 3/4..4/3 crop, so the centre crop at ratio 4/3 is returned
    top, left, h, w = crop_params(1, 100, (0.5, 1.0), rng=np.random.default_rng(0))
    assert (h, w) == (1, 1) and left == 49 and top == 0


def test_one_crop_for_all_frames_and_no_draw_without_crop():
    frame = torch.rand(1, 3, 24, 24)
    frames = torch.cat([frame, frame])
    rng = np.random.default_rng(3)
    out = random_resized_crop(frames, (12, 12), (0.4, 1.0), rng)
    assert out.shape == (2, 3, 12, 12) and torch.equal(out[0], out[1])
    state = rng.bit_generator.state
    resized = random_resized_crop(frames, (12, 12), (1.0, 1.0), rng)
    assert rng.bit_generator.state == state  # scale (1, 1) draws nothing
    assert resized.shape == (2, 3, 12, 12)
    u8 = random_resized_crop(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (4, 4), (0.5, 1.0), rng)
    assert u8.dtype == torch.uint8


@pytest.mark.parametrize("scale,ratio,match", [((0.0, 1.0), (0.75, 1.33), "scale"), ((0.5, 1.2), (0.75, 1.33), "scale"),
                                               ((0.5, 1.0), (2.0, 1.0), "ratio")])
def test_bad_ranges_are_errors(scale, ratio, match):
    with pytest.raises(HRAlignError, match=match):
        crop_params(10, 10, scale, ratio, rng=np.random.default_rng(0))
    with pytest.raises(HRAlignError, match="generator"):
        crop_params(10, 10, (0.5, 1.0))
