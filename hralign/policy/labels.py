"""LAM latent-token labels for the latent policy, read from ``hralign lam label``'s labels.h5.

The file format belongs to the LAM room (:mod:`hralign.lam.labels`); this module only turns it
into per-(domain, clip, frame) lookups and checks it against the pairs file it should describe.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.pairs import PairsFile


@dataclass
class TokenLabels:
    """Latent tokens per domain: ``rows[domain] = (clip int64 [N], t int64 [N], codes int64 [N, tokens])``."""

    num_tokens: int = field(metadata={"help": "latent tokens per frame pair"})
    codebook_size: int = field(metadata={"help": "codes per token"})
    gap: int = field(default=1, metadata={"help": "frame gap H the LAM labels (x_t, x_{t+H}) with"})
    source: str = field(default="", metadata={"help": "where the labels came from"})
    rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                        metadata={"help": "per-domain arrays"})

    def __post_init__(self) -> None:
        if self.num_tokens < 1 or self.codebook_size < 2:
            raise HRAlignError(f"{self.source}: labels need tokens >= 1 and codebook_size >= 2, found "
                               f"{self.num_tokens} and {self.codebook_size}")
        for d, (clip, t, codes) in self.rows.items():
            if not (len(clip) == len(t) == len(codes)) or (len(codes) and codes.shape[1] != self.num_tokens):
                raise HRAlignError(f"{self.source}: /{d} arrays disagree (clip {len(clip)}, t {len(t)}, codes "
                                   f"{list(codes.shape)}, tokens {self.num_tokens})")
            if len(codes) and (codes.min() < 0 or codes.max() >= self.codebook_size):
                raise HRAlignError(f"{self.source}: /{d}/codes outside 0..{self.codebook_size - 1}")

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(d for d in ("human", "robot") if d in self.rows and len(self.rows[d][0]))

    def select(self, domain: str, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of ``domain`` whose clip is in ``clips``: (clip, t, codes)."""
        if domain not in self.rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.num_tokens), np.int64)
        clip, t, codes = self.rows[domain]
        keep = np.isin(clip, clips)
        return clip[keep], t[keep], codes[keep]

    def check_against(self, pairs: PairsFile) -> None:
        """Every labelled (clip, t) must exist in ``pairs`` (labels of another file are an error)."""
        for d, (clip, t, _) in self.rows.items():
            if not len(clip):
                continue
            if d not in pairs.domains:
                raise HRAlignError(f"{self.source}: has {d} labels but {pairs.path} has no {d} clips")
            n = pairs.num_clips(d)
            if clip.max() >= n or clip.min() < 0:
                raise HRAlignError(f"{self.source}: {d} clip index {int(clip.max())} but {pairs.path} has {n} {d} "
                                   "clips; were the labels made for another pairs file?")
            lengths = pairs.clip_lengths(d)[clip]
            if (t < 0).any() or (t >= lengths).any():
                raise HRAlignError(f"{self.source}: {d} frame indices beyond their clips in {pairs.path}; "
                                   "were the labels made for another pairs file?")


def load_token_labels(path: str | os.PathLike, pairs: PairsFile | None = None) -> TokenLabels:
    """Read labels.h5 (format: :mod:`hralign.lam.labels`) and, given ``pairs``, check they fit it."""
    from hralign.lam.labels import read_labels  # the LAM room owns the format

    data = read_labels(path)
    attrs = data["attrs"]
    rows = {d: (np.asarray(data[d]["clip"], np.int64), np.asarray(data[d]["t"], np.int64),
                np.asarray(data[d]["codes"], np.int64)) for d in ("human", "robot") if d in data}
    for d, (_, _, codes) in rows.items():
        if codes.ndim != 2:
            raise HRAlignError(f"{path}: /{d}/codes should be [N, tokens] but has shape {list(codes.shape)}")
    labels = TokenLabels(num_tokens=int(attrs.get("tokens", 0)), codebook_size=int(attrs.get("codebook_size", 0)),
                         gap=int(attrs.get("gap", 1)), source=str(path), rows=rows)
    if pairs is not None:
        labels.check_against(pairs)
        recorded = str(attrs.get("pairs_sha256", ""))
        if recorded:

            if sha256_file(pairs.path) != recorded:
                warnings.warn(f"{path}: labels were made from a pairs file with another checksum than {pairs.path}",
                              stacklevel=2)
    return labels


def label_with_lam(lam: str | os.PathLike, pairs_path: str | os.PathLike, out: str | os.PathLike,
                   progress: bool = False) -> Path:
    """Run the LAM over every frame pair of both embodiments (``hralign lam label``) into ``out``."""
    from hralign.lam.labels import label_pairs

    return label_pairs(pairs_path, lam, out, progress=progress, overwrite=True)
