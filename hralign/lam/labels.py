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
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from hralign.atomic import atomic_path
from hralign.device import DeviceConfig, resolve
from hralign.encoders import load_encoder
from hralign.encoders.clips import encode_clips, shard_clips, unit_counts
from hralign.errors import HRAlignError
from hralign.hashing import sha256_file
from hralign.lam.config import LAMConfig
from hralign.lam.data import check_frame_size
from hralign.lam.encoder import LAMEncoder, find_codebook, latents_to_codes
from hralign.lam.io import META_FILE
from hralign.pairs import PairsFile, open_h5_readonly
from hralign.shard import Shard, current_shard, gather_parts

LABELS_FORMAT = "lam_labels"
LABELS_VERSION = 1
DATASETS = ("codes", "latents", "clip", "t")


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


def _codes(latents: list[torch.Tensor], codebook: torch.Tensor, tokens: int) -> np.ndarray:
    """int64 (N, tokens) nearest codebook entries of per-clip float32 latents (n_c, tokens * code_dim).

    One call per clip, so a row's code never depends on which rows share its call (sharding).
    """
    codebook = codebook.detach().float().cpu()
    codes = [latents_to_codes(z, codebook).numpy().astype(np.int64) for z in latents if len(z)]
    return np.concatenate(codes) if codes else np.zeros((0, tokens), np.int64)


def label_pairs(pairs_path: str | os.PathLike, lam: str | os.PathLike, out: str | os.PathLike,
                batch_size: int = 256, progress: bool = False, overwrite: bool = False,
                robot_lam: str | os.PathLike | None = None, devices: DeviceConfig | None = None,
                shard: Shard | None = None) -> Path:
    """Write labels.h5 (module docstring) for every frame pair of both embodiments; returns ``out``.

    ``robot_lam`` encodes the robot frame pairs with another LAM encoder, typically an HR-Align
    adapter saved over ``lam`` (HR-Align adapts the robot branch only; human pairs keep the
    frozen LAM), which gives the "after adaptation" labels. ``devices``: where the LAM runs
    (``--device`` / ``--precision``). Under ``torchrun`` / ``accelerate launch`` (``shard``,
    default :func:`hralign.shard.current_shard`) each process labels a contiguous share of the
    clips and the main process writes the file: the same file as one process writes.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise HRAlignError(f"--out {out}: exists; pass --overwrite to replace it")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise HRAlignError(f"`--batch-size` should be a positive integer but the value passed is {batch_size!r}")
    placement = resolve(devices)
    shard = shard if shard is not None else current_shard()
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
    units = {d: unit_counts(pairs, d, range(pairs.num_clips(d)), cfg.gap) for d in domains}
    if not any(u.any() for u in units.values()):
        longest = max(int(pairs.clip_lengths(d).max(initial=0)) for d in domains)
        raise HRAlignError(f"`--gap` {cfg.gap} of the LAM is longer than every clip of {pairs.path} "
                           f"(longest clip has {longest} frames)")
    short = sum(int((u == 0).sum()) for u in units.values())
    if short:
        warnings.warn(f"{pairs.path}: {short} clips have at most {cfg.gap} frames and give no (t, t+{cfg.gap}) pair; skipped")
    arrays: dict[str, np.ndarray] = {}
    for d in domains:
        net = encoders[d].to(placement.device).eval()
        clips = np.flatnonzero(units[d] > 0)
        lo, hi = shard_clips(pairs, d, clips, shard, cfg.gap, batch_size)
        lat = encode_clips(net, pairs, d, clips[lo:hi], gap=cfg.gap, batch_size=batch_size, placement=placement,
                           progress=progress, desc=f"lam label {d}")
        lat = [z for z in lat if len(z)]
        arrays[f"{d}/latents"] = torch.cat(lat).numpy() if lat else np.zeros((0, cfg.latent_dim), np.float32)
        arrays[f"{d}/codes"] = _codes(lat, find_codebook(encoders[d]), cfg.tokens)
    merged = gather_parts(arrays, out.with_name(f".{out.name}.parts"), shard)
    if merged is not None:
        _write_labels(out, merged, pairs, units, cfg, pairs_path, lam, robot_lam, encoder)
    shard.barrier()  # every process returns once the file exists
    pairs.close()
    return out


def _write_labels(out: Path, arrays: dict[str, np.ndarray], pairs: PairsFile, units: dict[str, np.ndarray],
                  cfg: LAMConfig, pairs_path, lam, robot_lam, encoder: nn.Module) -> None:
    """Write labels.h5 atomically from merged (latents, codes) per domain; rows are (clip, t) in order."""
    lam_meta_sha = getattr(next(m for m in encoder.modules() if isinstance(m, LAMEncoder)), "spec", {}).get("lam_sha256")
    with atomic_path(out, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"hralign_format": LABELS_FORMAT, "hralign_version": LABELS_VERSION, "gap": cfg.gap,
                            "codebook_size": cfg.codebook_size, "tokens": cfg.tokens, "code_dim": cfg.code_dim,
                            "latent_dim": cfg.latent_dim, "pairs_path": str(Path(pairs_path).resolve()),
                            "pairs_sha256": sha256_file(pairs_path), "lam": os.fspath(lam),
                            "lam_sha256": lam_meta_sha or "",
                            "robot_lam": os.fspath(robot_lam) if robot_lam is not None else ""})
            for d, u in units.items():
                clip = np.repeat(np.arange(len(u), dtype=np.int64), u)
                t = np.concatenate([np.arange(n, dtype=np.int64) for n in u]) if len(u) else np.zeros(0, np.int64)
                g = f.create_group(d)
                g.attrs["image_size"] = cfg.image_size
                g.create_dataset("codes", data=arrays[f"{d}/codes"].astype(np.int64))
                g.create_dataset("latents", data=arrays[f"{d}/latents"].astype(np.float32))
                g.create_dataset("clip", data=clip)
                g.create_dataset("t", data=t)


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
