"""Read throughput of the training Dataset vs a raw h5py read of the same frames, and peak memory.

Prints, measured in the same run on the same file and the same sampled frames:
  * frames/s of ``PairsDataset`` through a ``DataLoader`` (collation included),
  * frames/s of a bare h5py loop reading exactly those frames and their actions/state (two
    strategies: one covering slice per clip, or one read per frame), and the
    ratios (goal >= 0.7),
  * peak traced memory (tracemalloc; numpy buffers are traced) while reading the same number of
    items from a file and from one several times larger: it should stay flat.

Usage: OMP_NUM_THREADS=1 python benchmarks/pairs_read.py [--pairs 64] [--clip-frames 32] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from hralign.pairs import PairsWriter
from hralign.pairs.dataset import PairsDataset


def make_file(path: Path, pairs: int, clip_frames: int, size: int, seed: int = 0) -> Path:
    """Random-content pairs file (rendering is not what is measured), written clip by clip."""
    rng = np.random.default_rng(seed)
    with PairsWriter(path, overwrite=True) as w:
        for i in range(pairs):
            task = f"task {i % 8}"
            h = w.add_clip("human", rng.integers(0, 256, (clip_frames, size, size, 3), dtype=np.uint8), task)
            r = w.add_clip("robot", rng.integers(0, 256, (clip_frames, size, size, 3), dtype=np.uint8), task,
                           actions=rng.normal(size=(clip_frames, 4)).astype(np.float32),
                           state=rng.normal(size=(clip_frames, 8)).astype(np.float32))
            w.add_pair(h, r)
    return path


def dataset_pass(ds: PairsDataset, batch_size: int, workers: int, limit: int | None = None) -> tuple[int, float]:
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False,
                        persistent_workers=False)
    n = 0
    t0 = time.perf_counter()
    for b in loader:
        n += b["human"].shape[0] * b["human"].shape[1] + b["robot"].shape[0] * b["robot"].shape[1]
        if limit is not None and n >= limit:
            break
    return n, time.perf_counter() - t0


def planned_reads(ds: PairsDataset) -> list[tuple[int, np.ndarray, int, np.ndarray]]:
    """(human start, indices, robot start, indices) of every item, as the dataset samples them."""
    pf = ds.pairs
    out = []
    for i in range(len(ds)):
        it = ds[i]
        out.append((int(pf.clip_starts("human")[it["human_clip"]]), it["human_frames"].numpy(),
                    int(pf.clip_starts("robot")[it["robot_clip"]]), it["robot_frames"].numpy()))
    return out


def raw_pass(path: Path, plan, strategy: str) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        hd, rd = f["human/frames"], f["robot/frames"]
        ra, rs_ = f["robot/actions"], f["robot/state"]
        for hs, hi, rs, ri in plan:
            for ds, s, idx in ((hd, hs, hi), (rd, rs, ri)):
                if strategy == "slice":
                    lo, hi_ = int(idx.min()), int(idx.max()) + 1
                    x = ds[s + lo:s + hi_][idx - lo]
                else:
                    x = np.stack([ds[s + int(i)] for i in idx])
                n += x.shape[0]
            lo, hi_ = rs + int(ri.min()), rs + int(ri.max()) + 1
            ra[lo:hi_][ri - ri.min()]  # the dataset also returns actions and state of those frames
            rs_[lo:hi_][ri - ri.min()]
    return n, time.perf_counter() - t0


def peak_traced(ds: PairsDataset, items: int, batch_size: int) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    dataset_pass(ds, batch_size, 0, limit=items * 2 * ds.frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--clip-frames", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=8, help="T sampled per clip")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the throughput run")
    ap.add_argument("--scale", type=int, default=6, help="the big file has this many times more pairs")
    ap.add_argument("--dir", default=None, help="where to write the temporary files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(dir=args.dir))
    small = make_file(tmp / "small.h5", args.pairs, args.clip_frames, args.image_size)
    print(f"file: {args.pairs} pairs x 2 clips x {args.clip_frames} frames of {args.image_size}px "
          f"({os.path.getsize(small) / 2**20:.1f} MiB); T={args.frames}, batch {args.batch_size}, workers {args.workers}")

    ds = PairsDataset(small, frames=args.frames, split="all", sampling="random", seed=0)
    plan = planned_reads(ds)
    dataset_pass(ds, args.batch_size, args.workers)  # warm the page cache and imports
    best = {"dataset": 0.0, "raw slice": 0.0, "raw per-frame": 0.0}
    for _ in range(3):  # interleaved repeats, best of each (other processes share the CPU)
        n, t = dataset_pass(ds, args.batch_size, args.workers)
        best["dataset"] = max(best["dataset"], n / t)
        for name, strat in (("raw slice", "slice"), ("raw per-frame", "frame")):
            n, t = raw_pass(small, plan, strat)
            best[name] = max(best[name], n / t)
    for k, v in best.items():
        print(f"{k:>14}: {v:10.0f} frames/s")
    print(f"ratio dataset / raw h5py slice read: {best['dataset'] / best['raw slice']:.2f} (goal >= 0.7); "
          f"dataset / raw per-frame read: {best['dataset'] / best['raw per-frame']:.2f}")

    big = make_file(tmp / "big.h5", args.pairs * args.scale, args.clip_frames, args.image_size, seed=1)
    items = args.pairs  # the same number of items from both files
    peaks = {}
    for name, path in (("small", small), ("big", big)):
        d = PairsDataset(path, frames=args.frames, split="all", sampling="random", seed=0)
        peaks[name] = peak_traced(d, items, args.batch_size)
        print(f"peak traced memory reading {items} items from {name} file "
              f"({os.path.getsize(path) / 2**20:.1f} MiB): {peaks[name] / 2**20:.2f} MiB")
    data_read = items * 2 * args.frames * args.image_size ** 2 * 3
    print(f"data read per run: {data_read / 2**20:.2f} MiB; big/small peak ratio {peaks['big'] / peaks['small']:.2f} "
          f"(flat = about 1); process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    for p in (small, big):
        p.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
