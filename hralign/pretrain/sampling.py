"""What one training sample is: frames of one clip (R3M: five), cropped and colour-jittered alike.

Follows facebookresearch/r3m ``r3m/utils/data_loaders.py`` (``R3MBuffer._sample``): a start frame
from the first ``alpha`` of the clip, a goal frame from the last ``alpha``, and s0 < s1 < s2
drawn as s1 first, then s0 before it and s2 after it; with ``doaug="rctraj"`` one random resized
crop is applied to all five frames. R3M allows s2 == s1; we draw s0 < s1 < s2 strictly, which
is what the loss assumes, so clips need at least 3 frames.

Every objective's frames go through :func:`augment_frames`: the random resized crop above and,
when asked, a colour jitter (SimCLR's, Chen et al., 2020), both drawn once per sample and applied to
all of its frames, so the temporal objectives compare frames under one view and the augmentation
cannot tell frames apart.

All randomness comes from one ``torch.Generator`` that the trainer checkpoints, so an
interrupted run resumes bit-identically.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as TF

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


def jitter_frames(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """SimCLR's colour jitter at ``strength`` s, one draw applied to all frames of a sample.

    Brightness, contrast and saturation factors are uniform in [max(0, 1 - 0.8 s), 1 + 0.8 s] and
    the hue shift in [-0.2 s, 0.2 s] (SimCLR: ``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)``), applied in
    that fixed order with torchvision's functional ops; SimCLR's random order and p = 0.8 are left
    out so one draw of four numbers is the whole augmentation. ``frames``: float [F, 3, H, W] in
    [0, 1] -> the same shape in [0, 1]. ``strength`` 0 returns ``frames`` and draws nothing, so runs
    without jitter sample exactly as before it existed. Private to the trainer: ``strength`` was
    checked by the config (0 <= s <= 2.5, the hue shift stays within torchvision's 0.5).
    """
    if strength <= 0:
        return frames
    u = torch.rand(4, generator=generator).tolist()
    lo, hi = max(0.0, 1.0 - 0.8 * strength), 1.0 + 0.8 * strength
    b, c, s = (lo + x * (hi - lo) for x in u[:3])
    hue = (2.0 * u[3] - 1.0) * 0.2 * strength
    out = TF.adjust_brightness(frames, b)
    out = TF.adjust_contrast(out, c)
    out = TF.adjust_saturation(out, s)
    out = TF.adjust_hue(out, hue)
    return out.clamp_(0.0, 1.0)


def augment_frames(frames: torch.Tensor, size: int, crop_scale: float, color_jitter: float,
                   generator: torch.Generator) -> torch.Tensor:
    """The augmentation of every objective: :func:`crop_frames` then :func:`jitter_frames`, one draw
    each per sample. ``frames``: float [F, 3, H, W] in [0, 1] -> float [F, 3, size, size] in [0, 1]."""
    return jitter_frames(crop_frames(frames, size, crop_scale, generator), color_jitter, generator)
