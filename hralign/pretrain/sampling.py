"""What one R3M training sample is: five frames of one clip, cropped alike.

Follows facebookresearch/r3m ``r3m/utils/data_loaders.py`` (``R3MBuffer._sample``): a start frame
from the first ``alpha`` of the clip, a goal frame from the last ``alpha``, and s0 < s1 < s2
drawn as s1 first, then s0 before it and s2 after it; with ``doaug="rctraj"`` one random resized
crop is applied to all five frames. R3M allows s2 == s1; we draw s0 < s1 < s2 strictly, which
is what the loss assumes, so clips need at least 3 frames.

All randomness comes from one ``torch.Generator`` that the trainer checkpoints, so an
interrupted run resumes bit-identically.
"""

from __future__ import annotations

import math

import torch

from hralign.crop import random_resized_crop

# Order of the five frames of a sample (R3M's order: im0, img, imts0, imts1, imts2).
SAMPLE_SLOTS = ("start", "goal", "s0", "s1", "s2")
MIN_CLIP_LENGTH = 3


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def sample_frame_indices(length: int, alpha: float, generator: torch.Generator) -> list[int]:
    """Frame indices (start, goal, s0, s1, s2) within a clip of ``length`` >= 3 frames.

    start is in [0, floor(alpha*(L-1))], goal in [ceil((1-alpha)*(L-1)), L-1], and
    0 <= s0 < s1 < s2 <= L-1 (s1 uniform in [1, L-2], then s0 below and s2 above, as R3M).
    Private to the trainer: ``length`` was checked when the pairs file was opened.
    """
    last = length - 1
    start = _randint(0, int(math.floor(alpha * last)), generator)
    goal = _randint(int(math.ceil((1 - alpha) * last)), last, generator)
    s1 = _randint(1, last - 1, generator)
    s0 = _randint(0, s1 - 1, generator)
    s2 = _randint(s1 + 1, last, generator)
    return [start, goal, s0, s1, s2]


def crop_frames(frames: torch.Tensor, size: int, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """One random resized crop applied to all frames of a sample, resized to ``size``.

    ``frames``: float [F, 3, H, W] in [0, 1] -> float [F, 3, size, size] in [0, 1]. With
    ``min_scale == 1`` the frames are only resized (no randomness drawn).
    """
    return random_resized_crop(frames, (size, size), (min_scale, 1.0), generator).clamp_(0.0, 1.0)
