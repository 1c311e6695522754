"""Encode every frame (or frame pair) of a set of clips: the one definition every room uses.

Analysis latents, the adapt feature cache, policy features, sim alignment metrics and LAM labels
all need "features of every frame of these clips". Frames are read clip by clip by slice
(:meth:`PairsFile.read_clip`), so memory holds one batch whatever the file size.

Batches are planned from the clip list alone (:func:`plan_batches`): whole clips are grouped
until a group holds at least ``batch_size`` units, and a group is encoded in chunks of
``batch_size``. Because the plan is greedy from the first clip, any suffix that starts at a group
boundary plans the same groups, so a process that takes a contiguous run of groups
(:func:`shard_clips`) runs exactly the batches a single process would: sharded results are
bit-identical to unsharded ones (batch composition can change float results on CPU and GPU).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from hralign.device import Placement
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.shard import Shard

Output = Union[torch.Tensor, tuple]


def unit_counts(pairs: PairsFile, domain: str, clips: Sequence[int], gap: int = 0) -> np.ndarray:
    """Units per clip: frames (``gap`` 0) or frame pairs (x_t, x_{t+gap}), i.e. ``max(0, length - gap)``."""
    if gap < 0:
        raise HRAlignError(f"`gap` should be >= 0 but the value passed is {gap}")
    lengths = pairs.clip_lengths(domain)
    clips = np.asarray(clips, dtype=np.int64)
    if clips.size and (clips.min() < 0 or clips.max() >= len(lengths)):
        raise HRAlignError(f"{pairs.path}: clip ids should lie in [0, {len(lengths)}) for {domain} "
                           f"but range over [{clips.min()}, {clips.max()}]")
    return np.maximum(lengths[clips] - gap, 0) if clips.size else np.zeros(0, np.int64)


def plan_batches(units: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions of consecutive clips grouped until each group holds >= ``batch_size`` units
    (the last group may hold fewer). Depends only on ``units`` and ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise HRAlignError(f"`batch_size` should be a positive integer but the value passed is {batch_size!r}")
    groups: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for j, n in enumerate(units):
        cur.append(j)
        total += int(n)
        if total >= batch_size:
            groups.append(cur)
            cur, total = [], 0
    if cur:
        groups.append(cur)
    return groups


def shard_clips(pairs: PairsFile, domain: str, clips: Sequence[int], shard: Shard, gap: int = 0,
                batch_size: int = 64) -> tuple[int, int]:
    """[lo, hi) positions in ``clips`` this process encodes: a contiguous run of whole batch groups."""
    groups = plan_batches(unit_counts(pairs, domain, clips, gap), batch_size)
    g_lo, g_hi = shard.bounds(len(groups))
    if g_lo == g_hi:
        return (groups[g_lo][0], groups[g_lo][0]) if g_lo < len(groups) else (len(clips), len(clips))
    return groups[g_lo][0], groups[g_hi - 1][-1] + 1


def read_units(pairs: PairsFile, domain: str, clip: int, gap: int = 0) -> np.ndarray:
    """Every unit of one clip: uint8 frames (L, H, W, 3), or with ``gap`` > 0 frame pairs
    (L - gap, 2, H, W, 3) = (x_t, x_{t+gap})."""
    frames = pairs.read_clip(domain, int(clip))
    if gap == 0:
        return frames
    n = max(0, len(frames) - gap)
    return np.stack([frames[:n], frames[gap:gap + n]], axis=1)


def _cpu_float(y: torch.Tensor) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise HRAlignError(f"encoder returned {type(y).__name__}; expected a tensor (or a tuple of tensors)")
    return y.detach().float().cpu()


@torch.inference_mode()
def encode_clips(encoder: Callable[[torch.Tensor], Output], pairs: PairsFile, domain: str, clips: Sequence[int],
                 gap: int = 0, batch_size: int = 64, placement: Placement | None = None, progress: bool = False,
                 desc: str | None = None) -> list[Output]:
    """Outputs of ``encoder`` on every unit of each clip, in the order of ``clips``.

    Parameters
    ----------
    encoder : maps uint8 units (B, H, W, 3), or frame pairs (B, 2, H, W, 3) with ``gap`` > 0, to a
        tensor (B, ...) or a tuple of such tensors (e.g. features and trunk activations).
    pairs, domain, clips : the pairs file, "human" or "robot", clip ids (any order, repeats allowed).
    gap : 0 for frames; k > 0 for the frame pairs (x_t, x_{t+k}) a latent action model reads.
    batch_size : units per encoder call (batches are planned as in :func:`plan_batches`).
    placement : device and precision (:func:`hralign.device.resolve`); inputs go to its device and
        run under its autocast. The caller moves ``encoder`` there. Default: CPU, fp32.

    Returns
    -------
    Per clip a float32 CPU tensor (units, ...) (or a tuple of them when ``encoder`` returns tuples).
    Clips with no units get (0, ...) tensors shaped like the others ((0, 0) if nothing was encoded).
    """
    clips = [int(c) for c in clips]
    units = unit_counts(pairs, domain, clips, gap)
    device = placement.device if placement is not None else torch.device("cpu")
    autocast = placement.autocast if placement is not None else None
    results: list[Output | None] = [None] * len(clips)
    bar = tqdm(total=int(units.sum()), desc=desc or f"encode {domain}", unit="frame" if gap == 0 else "pair",
               disable=not progress, leave=False, dynamic_ncols=True)
    template: Output | None = None
    for group in plan_batches(units, batch_size):
        owners = [j for j in group if units[j] > 0]
        if not owners:
            continue
        x = np.concatenate([read_units(pairs, domain, clips[j], gap) for j in owners])
        outs = []
        for lo in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(device)
            if autocast is not None:
                with autocast():
                    y = encoder(xb)
            else:
                y = encoder(xb)
            y = tuple(_cpu_float(t) for t in y) if isinstance(y, tuple) else _cpu_float(y)
            first = y[0] if isinstance(y, tuple) else y
            if first.ndim < 1 or first.shape[0] != xb.shape[0]:
                raise HRAlignError(f"encoder returned shape {list(first.shape)} for {xb.shape[0]} inputs; "
                                   "expected [B, ...]")
            outs.append(y)
            bar.update(int(xb.shape[0]))
        if isinstance(outs[0], tuple):
            cat: Output = tuple(torch.cat([o[i] for o in outs]) for i in range(len(outs[0])))
        else:
            cat = torch.cat(outs)
        template = cat
        pos = 0
        for j in owners:
            n = int(units[j])
            results[j] = tuple(t[pos:pos + n] for t in cat) if isinstance(cat, tuple) else cat[pos:pos + n]
            pos += n
    bar.close()
    for j, r in enumerate(results):
        if r is None:  # a clip with no units
            if template is None:
                results[j] = torch.zeros(0, 0)
            else:
                results[j] = (tuple(t[:0] for t in template) if isinstance(template, tuple) else template[:0])
    return results  # type: ignore[return-value]
