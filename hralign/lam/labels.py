"""Latent action labels of every frame pair of a pairs file (``hralign lam label``).

labels.h5 format (version 1), what policies and analysis read
--------------------------------------------------------------
::

    /                 attrs: hralign_format="lam_labels", hralign_version=1,
                             gap (int, H), codebook_size (int, K), tokens (int), code_dim (int),
                             latent_dim (int, D = tokens * code_dim),
                             pairs_path (str), pairs_sha256 (str, of the source pairs file),
                             lam (str, the LAM directory or encoder spec), lam_sha256 (str),
                             robot_lam (str, "" unless the robot rows came from another encoder,
                             e.g. an HR-Align adapter over the LAM)
    /<domain>/        one group per domain present ("human", "robot"); attrs image_size
      codes           int64   [N, tokens]  nearest codebook entry per latent token (0..K-1)
      latents         float32 [N, D]       the IDM's continuous latent (before quantisation)
      clip            int64   [N]          clip index within the domain (as in the pairs file)
      t               int64   [N]          frame index within the clip; the row labels (x_t, x_{t+gap})

Rows are every (clip, t) with ``t + gap < clip_length``, sorted by clip then t. Clips with at most
``gap`` frames have no rows. Read it with :func:`read_labels`.

Datasets are chunked (``CHUNK_ROWS`` rows per HDF5 chunk, as ``hralign analyze`` writes latents.h5)
and written batch by batch as the LAM encodes, so labelling millions of frame pairs holds one
batch of latents in memory, not all of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from hralign.atomic import atomic_path
from hralign.encoders import load_encoder
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.lam.config import LAMConfig
from hralign.lam.data import FramePairs, check_frame_size
from hralign.lam.encoder import LAMEncoder, find_codebook, latents_to_codes
from hralign.lam.io import META_FILE
from hralign.pairs import PairsFile, open_h5_readonly

LABELS_FORMAT = "lam_labels"
LABELS_VERSION = 1
DATASETS = ("codes", "latents", "clip", "t")
CHUNK_ROWS = 4096  # rows per HDF5 chunk (same as latents.h5)


def _chunked(g: h5py.Group, name: str, shape: tuple[int, ...], dtype) -> h5py.Dataset:
    chunks = (min(CHUNK_ROWS, shape[0]),) + shape[1:] if shape[0] and all(shape[1:]) else None
    return g.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)


@torch.no_grad()
def _write_encoded(g: h5py.Group, encoder: nn.Module, data: FramePairs, batch_size: int, bar: Any = None) -> None:
    """Encode every row of ``data`` batch by batch into chunked /codes and /latents of ``g``."""
    codebook = find_codebook(encoder)
    n, d = len(data), int(codebook.shape[1])
    lat_ds = code_ds = None
    for i in range(0, n, batch_size):
        rows = np.arange(i, min(n, i + batch_size))
        z = encoder(data.get(rows)).float()
        codes = latents_to_codes(z, codebook.to(z.device)).cpu().numpy().astype(np.int64).reshape(len(rows), -1)
        if lat_ds is None:
            lat_ds = _chunked(g, "latents", (n, int(z.shape[1])), np.float32)
            code_ds = _chunked(g, "codes", (n, int(z.shape[1]) // d), np.int64)
        lat_ds[i:i + len(rows)] = z.cpu().numpy().astype(np.float32)
        code_ds[i:i + len(rows)] = codes
        if bar is not None:
            bar.update(len(rows))
    if lat_ds is None:  # no rows: same empty shapes as before
        g.create_dataset("latents", data=np.zeros((0, 0), np.float32))
        g.create_dataset("codes", data=np.zeros((0, 0), np.int64))


def resolve_lam_encoder(spec: str | os.PathLike) -> tuple[nn.Module, LAMConfig]:
    """A LAM directory (``lam.json``), ``lam:DIR``, or a saved adapter over a LAM -> (frozen encoder, LAM config)."""
    s = os.fspath(spec)
    if not s.startswith("lam:") and (Path(s) / META_FILE).is_file():
        enc: nn.Module = LAMEncoder(s).freeze()
    else:
        enc = load_encoder(s)
    for m in enc.modules():
        if isinstance(m, LAMEncoder):
            return enc, m.lam_config
    raise HRAlignError(f"--lam {s}: not a LAM (expected a directory written by `hralign lam train`, lam:DIR, "
                       "or an adapter saved over a lam: encoder)")


@torch.no_grad()
def encode_pairs(encoder: nn.Module, data: FramePairs, rows: np.ndarray, batch_size: int = 256,
                 bar: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(latents float32 [N, D], codes int64 [N, tokens]) of sample ``rows`` of ``data``."""
    codebook = find_codebook(encoder)
    lat, codes = [], []
    for i in range(0, len(rows), batch_size):
        z = encoder(data.get(rows[i:i + batch_size])).float()
        lat.append(z.cpu().numpy())
        codes.append(latents_to_codes(z, codebook.to(z.device)).cpu().numpy())
        if bar is not None:
            bar.update(int(z.shape[0]))
    d = int(codebook.shape[1])
    if not lat:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64)
    return np.concatenate(lat).astype(np.float32), np.concatenate(codes).astype(np.int64).reshape(-1, lat[0].shape[1] // d)


def label_pairs(pairs_path: str | os.PathLike, lam: str | os.PathLike, out: str | os.PathLike,
                batch_size: int = 256, progress: bool = False, overwrite: bool = False,
                robot_lam: str | os.PathLike | None = None) -> Path:
    """Write labels.h5 (module docstring) for every frame pair of both embodiments; returns ``out``.

    ``robot_lam`` encodes the robot frame pairs with another LAM encoder, typically an HR-Align
    adapter saved over ``lam`` (HR-Align adapts the robot branch only; human pairs keep the
    frozen LAM), which gives the "after adaptation" labels.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise HRAlignError(f"--out {out}: exists; pass --overwrite to replace it")
    if batch_size < 1:
        raise HRAlignError(f"`--batch-size` should be a positive integer but the value passed is {batch_size}")
    encoder, cfg = resolve_lam_encoder(lam)
    encoders = {"human": encoder, "robot": encoder}
    if robot_lam is not None:
        encoders["robot"], rcfg = resolve_lam_encoder(robot_lam)
        for key in ("gap", "image_size", "tokens", "code_dim", "codebook_size"):
            if getattr(rcfg, key) != getattr(cfg, key):
                raise HRAlignError(f"--robot-lam {robot_lam}: {key} {getattr(rcfg, key)} differs from --lam {lam} "
                                   f"({getattr(cfg, key)}); it should be an adapter over the same LAM")
    pairs = PairsFile(pairs_path)
    domains = pairs.domains
    if not domains:
        raise HRAlignError(f"{pairs.path}: has no clips to label")
    for d in domains:
        check_frame_size(pairs, (d,), cfg.image_size)
    sources = {d: FramePairs(pairs, (d,), cfg.gap) for d in domains}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(s) for s in sources.values()), desc="lam label", unit="pair", dynamic_ncols=True)
    lam_meta_sha = getattr(next(m for m in encoder.modules() if isinstance(m, LAMEncoder)), "spec", {}).get("lam_sha256")
    with atomic_path(out, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"hralign_format": LABELS_FORMAT, "hralign_version": LABELS_VERSION, "gap": cfg.gap,
                            "codebook_size": cfg.codebook_size, "tokens": cfg.tokens, "code_dim": cfg.code_dim,
                            "latent_dim": cfg.latent_dim, "pairs_path": str(Path(pairs_path).resolve()),
                            "pairs_sha256": sha256_file(pairs_path), "lam": os.fspath(lam),
                            "lam_sha256": lam_meta_sha or "",
                            "robot_lam": os.fspath(robot_lam) if robot_lam is not None else ""})
            for d, src in sources.items():
                g = f.create_group(d)
                g.attrs["image_size"] = cfg.image_size
                _write_encoded(g, encoders[d], src, batch_size, bar)
                _chunked(g, "clip", (len(src),), np.int64)[...] = src.index.clip.astype(np.int64)
                _chunked(g, "t", (len(src),), np.int64)[...] = src.index.t.astype(np.int64)
    if bar is not None:
        bar.close()
    return out


def read_labels(path: str | os.PathLike) -> dict[str, Any]:
    """Read labels.h5 -> ``{"attrs": {...}, "human": {"codes", "latents", "clip", "t"}, "robot": {...}}``."""
    with open_h5_readonly(path) as f:
        fmt = f.attrs.get("hralign_format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != LABELS_FORMAT:
            raise HRAlignError(f"{path}: attribute `hralign_format` is {fmt!r}, expected {LABELS_FORMAT!r} "
                               "(write it with `hralign lam label`)")
        version = f.attrs.get("hralign_version")
        if version is None or int(version) != LABELS_VERSION:
            raise HRAlignError(f"{path}: attribute `hralign_version` is {version!r}, expected {LABELS_VERSION}")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
                 for k, v in f.attrs.items()}
        out: dict[str, Any] = {"attrs": attrs}
        for d in ("human", "robot"):
            if d not in f:
                continue
            missing = [k for k in DATASETS if k not in f[d]]
            if missing:
                raise HRAlignError(f"{path}: /{d} lacks datasets {missing}")
            out[d] = {k: f[d][k][()] for k in DATASETS}
    return out
