"""Frame pairs (x_t, x_{t+H}) from a pairs file, for training and labelling a LAM.

Every (domain, clip, t) with t + gap inside the clip is one sample. Small domains are read into
memory once (one slice read per domain, the demo is a few MB); larger ones are read per sample by
slice, so a file larger than memory still works.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile

DOMAIN_CHOICES = ("human", "robot", "both")


def resolve_domains(pairs: PairsFile, domain: str) -> tuple[str, ...]:
    """'human' | 'robot' | 'both' -> the domains to read, checked against the file."""
    if domain not in DOMAIN_CHOICES:
        raise HRAlignError(f"`--domain` should be one of {DOMAIN_CHOICES} but the value passed is {domain!r}")
    wanted = ("human", "robot") if domain == "both" else (domain,)
    missing = [d for d in wanted if d not in pairs.domains]
    if missing:
        raise HRAlignError(f"{pairs.path}: has no {missing[0]} clips (--domain {domain}); it has {list(pairs.domains)}")
    return wanted


def check_frame_size(pairs: PairsFile, domains: tuple[str, ...], image_size: int | None) -> int:
    """Square frame side shared by ``domains``; must equal ``image_size`` when given."""
    sizes = {d: pairs.frame_shape(d)[:2] for d in domains}
    for d, (h, w) in sizes.items():
        if h != w:
            raise HRAlignError(f"{pairs.path}: /{d}/frames are {h}x{w}; the LAM reads square frames")
    sides = sorted({h for h, _ in sizes.values()})
    if len(sides) > 1:
        raise HRAlignError(f"{pairs.path}: human and robot frames differ in size ({sizes}); "
                           "train one LAM per domain (--domain human|robot) or resample the file")
    side = sides[0]
    if image_size is not None and side != image_size:
        raise HRAlignError(f"{pairs.path}: frames are {side}x{side} but the LAM reads {image_size}x{image_size}; "
                           "resample the frames or train a LAM at this size")
    return side


@dataclass
class FramePairIndex:
    domain: np.ndarray  # (N,) index into ``domains``
    clip: np.ndarray  # (N,) int64
    t: np.ndarray  # (N,) int64


class FramePairs:
    """All (x_t, x_{t+gap}) pairs of ``domains`` in a pairs file (or, with ``steps`` > 1, all
    sequences x_t, x_{t+gap}, ..., x_{t+steps*gap}: what unrolled FDM training reads).

    Parameters
    ----------
    pairs : PairsFile
    domains : tuple of str
    gap : int
        H. Clips with ``length <= steps * gap`` have no sample and are skipped with a warning; when
        no clip is long enough this is an error.
    preload_bytes : int
        Read a domain's frames into memory when they take at most this many bytes.
    steps : int
        Transitions per sample (1: frame pairs).
    """

    def __init__(self, pairs: PairsFile, domains: tuple[str, ...], gap: int, preload_bytes: int = 1 << 30,
                 steps: int = 1) -> None:
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
            raise HRAlignError(f"`--gap` should be a positive integer but the value passed is {gap!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise HRAlignError(f"`steps` should be a positive integer but the value passed is {steps!r}")
        self.pairs, self.domains, self.gap, self.steps = pairs, tuple(domains), gap, steps
        span = steps * gap
        dom, clips, ts = [], [], []
        longest, short = 0, 0
        for di, d in enumerate(self.domains):
            lengths = pairs.clip_lengths(d)
            longest = max(longest, int(lengths.max(initial=0)))
            for c, n in enumerate(lengths):
                if n <= span:
                    short += 1
                    continue
                t = np.arange(int(n) - span, dtype=np.int64)
                dom.append(np.full(t.shape, di, np.int64))
                clips.append(np.full(t.shape, c, np.int64))
                ts.append(t)
        if not ts:
            if steps > 1:
                raise HRAlignError(f"{steps} steps of `--gap` {gap} span {span} frames, longer than every clip of "
                                   f"{pairs.path} ({'/'.join(self.domains)}: longest clip has {longest} frames)")
            raise HRAlignError(f"`--gap` {gap} is longer than every clip of {pairs.path} ({'/'.join(self.domains)}: "
                               f"longest clip has {longest} frames); use --gap at most {max(longest - 1, 1)}")
        if short:
            warnings.warn(f"{pairs.path}: {short} clips have at most {span} frames and give no (t, t+{span}) "
                          f"{'pair' if steps == 1 else 'sequence'}; skipped")
        self.index = FramePairIndex(np.concatenate(dom), np.concatenate(clips), np.concatenate(ts))
        self._memory: dict[str, np.ndarray] = {}
        for d in self.domains:
            h, w, c = pairs.frame_shape(d)
            n = pairs.num_frames(d)
            if n * h * w * c <= preload_bytes:
                self._memory[d] = pairs.read_frames(d, 0, n)

    def __len__(self) -> int:
        return int(self.index.t.shape[0])

    def get(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (B, steps + 1, H, W, 3) frames of sample ``rows`` (frame pairs when steps is 1)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = None
        for di, d in enumerate(self.domains):
            sel = np.flatnonzero(self.index.domain[rows] == di)
            if sel.size == 0:
                continue
            clips, ts = self.index.clip[rows[sel]], self.index.t[rows[sel]]
            if d in self._memory:
                start = self.pairs.clip_starts(d)[clips] + ts
                frames = np.stack([self._memory[d][start + k * self.gap] for k in range(self.steps + 1)], axis=1)
            else:
                frames = np.stack([self.pairs.read_clip(d, int(c), [int(t) + k * self.gap for k in range(self.steps + 1)])
                                   for c, t in zip(clips, ts)])
            if out is None:
                out = np.empty((rows.size, *frames.shape[1:]), np.uint8)
            out[sel] = frames
        return out
