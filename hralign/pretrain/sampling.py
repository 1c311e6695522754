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
from torchvision.transforms.v2 import functional as TF

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


def crop_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, torchvision's algorithm on our generator.

    Hand-written because ``torchvision.transforms.RandomResizedCrop.get_params`` draws from the
    global torch RNG, and we need a generator whose state is saved in checkpoints (resume gives
    identical crops). Same rule: 10 tries of area/aspect sampling, else a centre crop.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator)
        target_area = area * (scale[0] + float(u[0]) * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + float(u[1]) * (log_ratio[1] - log_ratio[0]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(0, height - h, generator)
            left = _randint(0, width - w, generator)
            return top, left, h, w
    in_ratio = width / height  # fallback: centre crop at the nearest allowed aspect ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_frames(frames: torch.Tensor, size: int, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """One random resized crop applied to all frames of a sample, resized to ``size``.

    ``frames``: float [F, 3, H, W] in [0, 1] -> float [F, 3, size, size] in [0, 1]. With
    ``min_scale == 1`` the frames are only resized (no randomness drawn).
    """
    _, _, height, width = frames.shape
    if min_scale >= 1.0:
        top, left, h, w = 0, 0, height, width
    else:
        top, left, h, w = crop_params(height, width, (min_scale, 1.0), (3 / 4, 4 / 3), generator)
    out = TF.resized_crop(frames, top, left, h, w, [size, size], antialias=True)
    return out.clamp_(0.0, 1.0)
