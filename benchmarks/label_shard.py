"""`hralign lam label` on 1 process vs N processes (torchrun, CPU/gloo), same run, same file.

Prints wall time of each command (process start and model loading included, which do not shrink
with N), frame pairs per second, the speed-up, and whether the N-process labels file equals the
one-process file bit for bit (both with one OMP thread per process, so only sharding differs).
Usage: ``python benchmarks/label_shard.py --procs 2 --tasks 8 --pairs-per-task 8 --frames 24``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

TINY_LAM = ["--idm", "conv", "--conv-channels", "8", "--patch-size", "8", "--dim", "32", "--heads", "2",
            "--idm-depth", "1", "--fdm-depth", "1", "--code-dim", "8", "--batch-size", "8"]


def _run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-2000:])
    return time.perf_counter() - t0


def _same(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(np.array_equal(fa[d][k][()], fb[d][k][()]) for d in ("human", "robot") if d in fa
                   for k in ("codes", "latents", "clip", "t"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--pairs-per-task", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "hralign.cli.main"]
    torchrun = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", str(args.procs),
                "--master_port", "29561", "-m", "hralign.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _run([*cli, "pairs", "synth", "--out", str(d / "p.h5"), "--num-tasks", str(args.tasks), "--pairs-per-task",
              str(args.pairs_per_task), "--frames", str(args.frames), "--image-size", str(args.image_size),
              "--seed", str(args.seed)], 1)
        _run([*cli, "lam", "train", "--pairs", str(d / "p.h5"), "--out", str(d / "lam"), "--gap", "2", "--steps", "2",
              "--device", "cpu", "--seed", str(args.seed), *TINY_LAM], 1)
        label = ["lam", "label", "--pairs", str(d / "p.h5"), "--lam", str(d / "lam"), "--device", "cpu",
                 "--batch-size", str(args.batch_size)]
        t1 = _run([*cli, *label, "--out", str(d / "one.h5")], 1)
        tn = _run([*torchrun, *label, "--out", str(d / "many.h5")], 1)
        with h5py.File(d / "one.h5", "r") as f:
            rows = sum(len(f[g]["t"]) for g in ("human", "robot") if g in f)
        print(f"lam label, {rows} frame pairs of {args.image_size}px, batch {args.batch_size}, 1 OMP thread per process")
        print(f"  1 process:  {t1:6.1f} s  ({rows / t1:7.1f} pairs/s, start-up included)")
        print(f"  {args.procs} processes: {tn:6.1f} s  ({rows / tn:7.1f} pairs/s, start-up included)")
        print(f"  speed-up {t1 / tn:.2f}x; labels identical to the 1-process file: {_same(d / 'one.h5', d / 'many.h5')}")


if __name__ == "__main__":
    main()
