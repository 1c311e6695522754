"""Random resized crop: one definition for pretraining (R3M's "rctraj") and adaptation (HR-Align).

The algorithm is torchvision's ``RandomResizedCrop.get_params`` (10 tries of area / log-aspect
sampling, else a centre crop at the nearest allowed aspect ratio), drawn from the caller's
generator instead of the global torch RNG: the trainers keep their generators' state in
checkpoints (pretrain: one ``torch.Generator``; adapt: one ``numpy.random.Generator`` per pair of
the global batch, so a batch is a function of (seed, step)), and a resumed run crops the same way.
Hand-written for that reason only; the crop itself is torchvision's ``resized_crop``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from hralign.errors import HRAlignError

Rng = torch.Generator | np.random.Generator
RATIO = (3 / 4, 4 / 3)  # torchvision's default aspect-ratio range, used by both trainers


def _uniform2(rng: Rng) -> tuple[float, float]:
    if isinstance(rng, np.random.Generator):
        u = rng.random(2)
    else:
        u = torch.rand(2, generator=rng)
    return float(u[0]), float(u[1])


def _randint(low: int, high: int, rng: Rng) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high + 1))
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def crop_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float] = RATIO,
                rng: Rng | None = None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop of a ``height`` x ``width`` image.

    Parameters
    ----------
    scale : (min, max) share of the image area the crop covers, 0 < min <= max <= 1.
    ratio : (min, max) aspect ratio w / h of the crop before resizing.
    rng : a ``torch.Generator`` or ``numpy.random.Generator`` (required: no global RNG is used).
    """
    if rng is None:
        raise HRAlignError("crop_params: pass a generator (torch.Generator or numpy.random.Generator)")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise HRAlignError(f"crop `scale` should satisfy 0 < min <= max <= 1 but the value passed is {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise HRAlignError(f"crop `ratio` should satisfy 0 < min <= max but the value passed is {ratio}")
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u0, u1 = _uniform2(rng)
        target_area = area * (scale[0] + u0 * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + u1 * (log_ratio[1] - log_ratio[0]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(0, height - h, rng)
            left = _randint(0, width - w, rng)
            return top, left, h, w
    in_ratio = width / height  # fallback: centre crop at the nearest allowed aspect ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(frames: torch.Tensor, size: tuple[int, int], scale: tuple[float, float],
                        rng: Rng, ratio: tuple[float, float] = RATIO) -> torch.Tensor:
    """One random resized crop applied alike to every frame of ``frames`` (F, C, H, W), resized to
    ``size`` (h, w) with antialiasing. uint8 stays uint8, float stays float. ``scale`` (1, 1)
    only resizes (no randomness drawn)."""
    _, _, height, width = frames.shape
    if scale[0] >= 1.0:
        top, left, h, w = 0, 0, height, width
    else:
        top, left, h, w = crop_params(height, width, scale, ratio, rng)
    return TF.resized_crop(frames, top, left, h, w, list(size), antialias=True)
