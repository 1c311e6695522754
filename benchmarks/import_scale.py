"""`hralign pairs import` at scale: a generated LeRobotDataset v3.0 of many episodes imported end to end.

The set is written in the shipped v3.0 layout (meta/info.json, meta/tasks.parquet,
meta/episodes/chunk-000/file-*.parquet, data/chunk-000/file-*.parquet, and
videos/<key>/chunk-000/file-*.mp4 holding ``--per-file`` episodes each, encoded as LeRobot does:
libsvtav1, GOP 2, crf 30). Frames are rendered by ``hralign.pairs.synth`` (tabletop scenes, so
compression sees realistic content, not noise). Prints, measured in this run:

  1. clips/s of the whole import (plan + decode + resample + resize + compress + write) with 1 and
     2 decode workers (``--speed-clips`` clips each);
  2. per compression (none, gzip, lzf, blosc): bytes per stored frame, import clips/s, and read
     speed of every frame back through ``PairsFile`` (``--compression-clips`` clips each);
  3. peak RSS of the import process (main, and the largest worker) at ``--small`` and ``--clips``
     clips, each in a fresh process: flat means memory does not grow with the set;
  4. ``hralign adapt``'s reader (``read_units`` -> ``PairsFile.read_clip``, in-process, no DataLoader:
     see :func:`adapt_reads`) on an imported paired file vs raw h5py reads of exactly the same
     frames in the same order (goal >= 0.9x), per training step (plain path) and per whole clip
     (feature-cache path). The paired file is the same mp4s imported with the ``folder`` importer:
     episode 2k as a human clip, 2k+1 as its robot pair.

Usage: OMP_NUM_THREADS=1 python benchmarks/import_scale.py [--clips 10000] [--small 1000] [--seed 0]
       OMP_NUM_THREADS=1 python benchmarks/import_scale.py --parts 4     # the reader comparison only
"""

from __future__ import annotations

import os

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's encoder banner on stderr: errors only

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hralign.pairs import PairsFile
from hralign.pairs.importers import plan_import
from hralign.pairs.importers.folder import FolderConfig
from hralign.pairs.importers.lerobot import LeRobotConfig
from hralign.pairs.importers.pipeline import DEFAULT_COMPRESSION, ImportConfig, run_import
from hralign.pairs.synth import SynthConfig, synthesize

CAMERA = "observation.images.front"
FPS = 10


# -- the generated dataset -----------------------------------------------------------------------
def frame_pool(tmp: Path, size: int, seed: int) -> np.ndarray:
    """Synth-rendered frames (both domains), uint8 [N, size, size, 3], reused across episodes."""
    path = synthesize(tmp / "pool.h5", SynthConfig(num_tasks=8, pairs_per_task=4, frames=16, image_size=size,
                                                   seed=seed, val_fraction=0.0))
    pf = PairsFile(path)
    frames = np.concatenate([pf.read_frames(d, 0, pf.num_frames(d)) for d in ("human", "robot")])
    pf.close()
    path.unlink()
    return frames


def write_lerobot_v3(root: Path, episodes: int, length: int, per_file: int, pool: np.ndarray, seed: int) -> None:
    """A v3.0 dataset of ``episodes`` episodes of ``length`` frames, ``per_file`` episodes per mp4/parquet."""
    rng = np.random.default_rng(seed)
    tasks = [f"task {k}: move the block" for k in range(8)]
    ep_rows, g = [], 0
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    vdir = root / f"videos/{CAMERA}/chunk-000"
    vdir.mkdir(parents=True)
    for file_index, f0 in enumerate(range(0, episodes, per_file)):
        eps = range(f0, min(episodes, f0 + per_file))
        cols = {k: [] for k in ("action", "observation.state", "timestamp", "frame_index", "episode_index", "index",
                                "task_index")}
        with av.open(str(vdir / f"file-{file_index:03d}.mp4"), "w") as c:
            s = c.add_stream("libsvtav1", rate=FPS)  # LeRobot's default encoder settings: AV1, GOP 2, crf 30
            s.height, s.width = pool.shape[1:3]
            s.pix_fmt = "yuv420p"
            s.options = {"g": "2", "crf": "30", "preset": "12"}
            t0 = 0.0
            for e in eps:
                start = int(rng.integers(0, len(pool) - length))
                for i in range(length):
                    for p in s.encode(av.VideoFrame.from_ndarray(pool[start + i], format="rgb24")):
                        c.mux(p)
                task = e % len(tasks)
                cols["action"] += rng.normal(size=(length, 7)).astype(np.float32).tolist()
                cols["observation.state"] += rng.normal(size=(length, 8)).astype(np.float32).tolist()
                cols["timestamp"] += (np.arange(length, dtype=np.float32) / FPS).tolist()
                cols["frame_index"] += list(range(length))
                cols["episode_index"] += [e] * length
                cols["index"] += list(range(g, g + length))
                cols["task_index"] += [task] * length
                ep_rows.append({"episode_index": e, "tasks": [tasks[task]], "length": length,
                                "data/chunk_index": 0, "data/file_index": file_index,
                                "dataset_from_index": g, "dataset_to_index": g + length,
                                f"videos/{CAMERA}/chunk_index": 0, f"videos/{CAMERA}/file_index": file_index,
                                f"videos/{CAMERA}/from_timestamp": t0, f"videos/{CAMERA}/to_timestamp": t0 + length / FPS,
                                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                t0 += length / FPS
                g += length
            for p in s.encode():
                c.mux(p)
        pq.write_table(pa.table({
            "action": pa.array(cols["action"], type=pa.list_(pa.float32(), 7)),
            "observation.state": pa.array(cols["observation.state"], type=pa.list_(pa.float32(), 8)),
            **{k: pa.array(cols[k], type=pa.float32() if k == "timestamp" else pa.int64())
               for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}}),
            root / f"data/chunk-000/file-{file_index:03d}.parquet")
    pq.write_table(pa.Table.from_pylist(ep_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": list(range(len(tasks))), "task": tasks}), root / "meta/tasks.parquet")
    h, w = pool.shape[1:3]
    features = {CAMERA: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": [7]}, "observation.state": {"dtype": "float32", "shape": [8]},
                **{k: {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1]}
                   for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}}
    (root / "meta/info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "robot_type": "sim", "total_episodes": episodes, "total_frames": g,
        "total_tasks": len(tasks), "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{episodes}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features}))


def write_pair_csv(root: Path, pairs: int) -> Path:
    """folder-importer CSV over the same mp4s: episode 2k (human) and 2k+1 (robot) of each file, paired."""
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    rows = ["path,instruction,embodiment,start,end,pair"]
    for k in range(pairs):
        for emb, ep in (("human", eps[2 * k]), ("robot", eps[2 * k + 1])):
            video = f"videos/{CAMERA}/chunk-000/file-{ep[f'videos/{CAMERA}/file_index']:03d}.mp4"
            rows.append(f"{video},task {k % 8},{emb},{ep[f'videos/{CAMERA}/from_timestamp']:.6f},"
                        f"{ep[f'videos/{CAMERA}/to_timestamp']:.6f},p{k}")
    path = root.parent / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# -- measurements --------------------------------------------------------------------------------
def timed_import(root: Path, out: Path, clips: int, workers: int, compression: str | None, size: int) -> dict:
    """Plan + import of the first ``clips`` episodes; returns clips/s, frames and the output size."""
    t0 = time.perf_counter()
    plan = plan_import("lerobot", root, LeRobotConfig())
    plan.clips = plan.clips[:clips]
    rep = run_import(plan, out, ImportConfig(image_size=size, workers=workers, compression=compression,
                                             overwrite=True), progress=False)
    dt = time.perf_counter() - t0
    return {"clips": clips, "seconds": dt, "clips_per_s": clips / dt, "frames": rep.frames["robot"],
            "bytes": out.stat().st_size}


def child(args: argparse.Namespace) -> None:
    """``--child``: one import in a fresh process; prints its figures and peak RSS as JSON."""
    r = timed_import(Path(args.root), Path(args.out), args.child, args.workers, args.compression, args.image_size)
    r["rss_main_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["rss_worker_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(r))


def run_child(root: Path, out: Path, clips: int, workers: int, compression: str, size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(clips), "--root", str(root), "--out", str(out),
           "--workers", str(workers), "--compression", compression, "--image-size", str(size)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"child import failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def read_all(path: Path) -> float:
    """Frames/s reading every clip back through PairsFile.read_clip."""
    pf = PairsFile(path)
    n, t0 = 0, time.perf_counter()
    for d in pf.domains:
        for c in range(pf.num_clips(d)):
            n += pf.read_clip(d, c).shape[0]
    dt = time.perf_counter() - t0
    pf.close()
    return n / dt


def adapt_reads(path: Path, frames: int, batch_size: int, steps: int, seed: int = 0,
                repeats: int = 5) -> dict[str, dict[str, float]]:
    """Frames/s of ``hralign adapt``'s reader and of raw h5py reads of the same frames, in the same order.

    adapt reads frames through ``hralign.align.features.read_units`` -> ``PairsFile.read_clip``, in
    the main process (no DataLoader): on its plain path (``--augment``, ``--no-cache``, or encoders
    without a cut stage) once per step, T frames of each human and robot clip of the step's pairs,
    stacked into a (B, T, H, W, 3) tensor (``Batches`` / ``_read_frames`` in hralign/align/trainer.py);
    on its default cached path once per run, every frame of every clip (``_encode_clips`` in
    align/features.py). Both are measured here with adapt's own sampling functions (train split,
    ``step_batch``, ``step_positions``, ``positions_to_indices``). The raw reads open their own
    ``h5py.File`` (default chunk cache, the same HDF5 blosc filter decoding the same chunks) and read
    the same frame indices: one covering slice per clip, or one ``dset[i]`` per index; a whole clip
    is one slice. Each method has its own file handle (no shared chunk cache) and reads the whole
    plan in one pass; passes alternate between the methods, first one rotated, and each method's
    figure is its fastest of ``repeats`` passes (a burst of load on a shared machine spoils a
    pass, not the figure). (Interleaving the methods step by step instead gave figures that
    depended on which method read a step's frames first, in trials on this machine.)
    """
    import torch

    from hralign.align.features import read_units
    from hralign.align.sampling import positions_to_indices, step_batch, step_positions
    from hralign.pairs.split import split_pairs

    torch.set_num_threads(1)
    pf = PairsFile(path)
    train, _ = split_pairs(pf, val_fraction=0.2, by="pair", seed=seed)  # adapt's defaults
    train = np.asarray(train, dtype=np.int64)
    clip = {"human": pf.pairs[:, 0], "robot": pf.pairs[:, 1]}
    length = {d: pf.clip_lengths(d)[clip[d]] for d in clip}
    start = {d: pf.clip_starts(d) for d in clip}
    plan = [(step_batch(train, batch_size, seed, s), step_positions(batch_size, frames, seed, s)) for s in range(steps)]

    def adapt_step(_h, ids, pos):  # Batches.__call__ on the plain path, minus the device copy
        out = []
        for d in ("human", "robot"):
            idx = positions_to_indices(pos, length[d][ids])
            out.append(torch.from_numpy(np.stack([read_units(pf, d, int(c), i, 0) for c, i in zip(clip[d][ids], idx)])))
        return sum(x.shape[0] * x.shape[1] for x in out)

    def raw_step(h, ids, pos, per_frame):
        n = 0
        for d in ("human", "robot"):
            dset, idx = h[d], positions_to_indices(pos, length[d][ids])
            rows = []
            for c, i in zip(clip[d][ids].tolist(), idx):
                s = int(start[d][c])
                if per_frame:
                    rows.append(np.stack([dset[s + k] for k in i.tolist()]))
                else:
                    lo, up = int(i.min()), int(i.max()) + 1
                    rows.append(dset[s + lo:s + up][i - lo])
            x = torch.from_numpy(np.stack(rows))
            n += x.shape[0] * x.shape[1]
        return n

    whole = [(d, int(c)) for d in clip for c in sorted(set(clip[d].tolist()))]

    def adapt_clip(_h, d, c):  # _encode_clips: read_units(np.arange(units)) per clip
        return len(read_units(pf, d, c, np.arange(int(pf.clip_lengths(d)[c])), 0))

    def raw_clip(h, d, c):
        s = int(start[d][c])
        return len(h[d][s:s + int(pf.clip_lengths(d)[c])])

    methods = {"step": {"adapt": adapt_step, "raw slice": lambda h, i, p: raw_step(h, i, p, False),
                        "raw per frame": lambda h, i, p: raw_step(h, i, p, True)},
               "clip": {"adapt": adapt_clip, "raw slice": raw_clip}}
    work = {"step": plan, "clip": whole}
    result = {}
    for kind, fns in methods.items():
        files = {name: h5py.File(path, "r") for name in fns if name != "adapt"}
        # dataset objects looked up once (an h5py name lookup costs ~100 us, as much as a frame)
        handles = {name: {d: files[name][f"{d}/frames"] for d in clip} if name in files else None for name in fns}
        n, best = dict.fromkeys(fns, 0), dict.fromkeys(fns, float("inf"))
        names = list(fns)
        for rep in range(repeats):
            for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate who goes first
                fn, h, got = fns[name], handles[name], 0
                t0 = time.perf_counter()
                for args in work[kind]:
                    got += fn(h, *args)
                best[name] = min(best[name], time.perf_counter() - t0)
                n[name] = got
        for f in files.values():
            f.close()
        result[kind] = {name: n[name] / best[name] for name in fns}
    pf.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=10000, help="episodes generated and imported end to end")
    ap.add_argument("--small", type=int, default=1000, help="the smaller import for the RSS comparison")
    ap.add_argument("--speed-clips", type=int, default=2000, help="clips imported for the 1 vs 2 worker comparison")
    ap.add_argument("--compression-clips", type=int, default=1000, help="clips imported per compression")
    ap.add_argument("--reader-pairs", type=int, default=500,
                    help="pairs of the paired file for the reader comparison (keep its frames well above HDF5's "
                         "8 MiB chunk cache)")
    ap.add_argument("--length", type=int, default=8, help="frames per episode")
    ap.add_argument("--per-file", type=int, default=200, help="episodes per mp4 (and per data parquet)")
    ap.add_argument("--source-size", type=int, default=64, help="side of the generated frames")
    ap.add_argument("--image-size", type=int, default=48, help="--image-size of the import (centre crop + resize)")
    ap.add_argument("--reader-size", type=int, default=128, help="a second --image-size for the reader comparison "
                                                                  "(128 is the import's default)")
    ap.add_argument("--frames", type=int, default=5, help="T frames per clip of the reader comparison (adapt's default)")
    ap.add_argument("--batch-size", type=int, default=16, help="pairs per step of the reader comparison (adapt's default)")
    ap.add_argument("--reader-steps", type=int, default=50, help="adapt steps read in the reader comparison")
    ap.add_argument("--parts", default="1,2,3,4", help="which measurements to run, e.g. 4 for the reader only "
                                                       "(then only 2 x --reader-pairs episodes are generated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="where to write the temporary files")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--compression", default=DEFAULT_COMPRESSION, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        args.compression = None if args.compression == "none" else args.compression
        return child(args)
    parts = {int(x) for x in args.parts.split(",")}
    episodes = args.clips if parts & {1, 2, 3} else min(args.clips, 2 * args.reader_pairs)
    tmp = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        root = tmp / "lerobot"
        t0 = time.perf_counter()
        write_lerobot_v3(root, episodes, args.length, args.per_file, frame_pool(tmp, args.source_size, args.seed),
                         args.seed)
        print(f"generated LeRobot v3.0: {episodes} episodes x {args.length} frames of {args.source_size}px, "
              f"{args.per_file} episodes per mp4 (AV1, GOP 2) in {time.perf_counter() - t0:.0f} s; "
              f"import at --image-size {args.image_size}, source fps {FPS}")
        print(f"cpu cores: {os.cpu_count()}")

        if 1 in parts:
            print(f"\n1. import speed (plan + decode + resize + compress + write), {DEFAULT_COMPRESSION}")
            speed = {}
            for w in (1, 2):
                speed[w] = timed_import(root, tmp / f"w{w}.h5", min(args.speed_clips, args.clips), w, DEFAULT_COMPRESSION,
                                        args.image_size)
                print(f"   workers={w}: {speed[w]['clips_per_s']:.1f} clips/s ({speed[w]['clips']} clips, "
                      f"{speed[w]['frames']} frames, {speed[w]['seconds']:.1f} s)")
            print(f"   2 workers / 1 worker: {speed[2]['clips_per_s'] / speed[1]['clips_per_s']:.2f}x")

        if 2 in parts:
            print("\n2. compression (frames of the import; bytes per frame = file bytes / frames)")
            n = min(args.compression_clips, args.clips)
            for comp in ("none", "gzip", "lzf", "blosc"):
                out = tmp / f"c_{comp}.h5"
                r = timed_import(root, out, n, 2, None if comp == "none" else comp, args.image_size)
                rd = max(read_all(out) for _ in range(2))
                raw = args.image_size ** 2 * 3
                print(f"   {comp:>5}: {r['bytes'] / r['frames']:8.0f} B/frame ({r['bytes'] / r['frames'] / raw:.2f} of raw), "
                      f"import {r['clips_per_s']:6.1f} clips/s, read {rd:8.0f} frames/s")
                out.unlink()

        if 3 in parts:
            print(f"\n3. peak RSS, each import in a fresh process (2 workers, {DEFAULT_COMPRESSION})")
            rss = {}
            for k in sorted({min(args.small, args.clips), args.clips}):
                rss[k] = run_child(root, tmp / f"rss{k}.h5", k, 2, DEFAULT_COMPRESSION, args.image_size)
                print(f"   {k:>6} clips: main {rss[k]['rss_main_mib']:.0f} MiB, largest worker "
                      f"{rss[k]['rss_worker_mib']:.0f} MiB, {rss[k]['clips_per_s']:.1f} clips/s end to end "
                      f"({rss[k]['seconds']:.0f} s), {rss[k]['bytes'] / 2**20:.1f} MiB written")
                (tmp / f"rss{k}.h5").unlink()
            if len(rss) == 2:
                a, b = (rss[k] for k in sorted(rss))
                print(f"   main RSS ratio {args.clips} / {min(args.small, args.clips)} clips: "
                      f"{b['rss_main_mib'] / a['rss_main_mib']:.2f} (flat = about 1)")

        if 4 in parts:
            print(f"\n4. hralign adapt's reader (read_units -> PairsFile.read_clip, T={args.frames}, batch {args.batch_size}, "
                  f"in-process as adapt reads) vs raw h5py on the same frames")
            pairs = min(args.reader_pairs, episodes // 2)
            csv = write_pair_csv(root, pairs)
            for size in sorted({args.image_size, args.reader_size}):
                for comp in (DEFAULT_COMPRESSION, "none"):
                    out = tmp / f"paired_{comp}_{size}.h5"
                    run_import(plan_import("folder", root, FolderConfig(csv=str(csv))), out,
                               ImportConfig(image_size=size, workers=2, compression=None if comp == "none" else comp),
                               progress=False)
                    r = adapt_reads(out, args.frames, args.batch_size, args.reader_steps, args.seed)
                    st, cl = r["step"], r["clip"]
                    best = max(st["raw slice"], st["raw per frame"])
                    print(f"   {size:>3}px {comp:>5} ({pairs} pairs): per step (plain path, {args.reader_steps} steps): "
                          f"adapt {st['adapt']:7.0f} frames/s, raw slice {st['raw slice']:7.0f}, raw per frame "
                          f"{st['raw per frame']:7.0f}, ratio to the faster raw {st['adapt'] / best:.2f}; whole clips "
                          f"(cached path): adapt {cl['adapt']:7.0f}, raw {cl['raw slice']:7.0f}, ratio "
                          f"{cl['adapt'] / cl['raw slice']:.2f} (goal >= 0.9)")
                    out.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
