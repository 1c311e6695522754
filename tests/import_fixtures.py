"""Small datasets written in the real layouts (LeRobot v3.0 / v2.1, robomimic, a folder of videos).

Frames are smooth patterns whose red level encodes the global frame number, so a test can tell
which source frame an imported one is (codec error is a few levels, frames differ by 9).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CAMERA = "observation.images.top"


def frame_img(g: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Source frame number ``g``: red = 9 g mod 256 (flat), green/blue smooth ramps."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (g * 9) % 256
    img[..., 1] = (x * 3 + g) % 256
    img[..., 2] = (y * 4) % 256
    return img


def frame_number(frame: np.ndarray, candidates: range) -> int:
    """The source frame number a decoded frame is closest to."""
    errs = [np.abs(frame.astype(np.int32) - frame_img(g, *frame.shape[:2]).astype(np.int32)).mean() for g in candidates]
    return candidates[int(np.argmin(errs))]


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10, gop: int = 12, codec: str = "libx264") -> Path:
    """mp4, keyframe every ``gop`` frames: H.264 (high quality) or AV1 (libsvtav1, as LeRobot encodes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "8", "g": str(gop), "bf": "0"} if codec == "libx264" else {"crf": "20", "g": str(gop)}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def episode_arrays(e: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(actions [n, 2], state [n, 3]) of episode ``e``: values encode (episode, step)."""
    steps = np.arange(n, dtype=np.float32)
    actions = np.stack([e + 0 * steps, steps / 10], axis=1).astype(np.float32)
    state = np.stack([100 + e + 0 * steps, steps, -steps], axis=1).astype(np.float32)
    return actions, state


def _features(h: int, w: int) -> dict:
    return {
        CAMERA: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                 "info": {"video.fps": 10, "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "observation.state": {"dtype": "float32", "shape": [3], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _data_table(eps: list[tuple[int, int, int, int]]) -> pa.Table:
    """Rows of episodes given as (episode, length, first global index, task index)."""
    cols: dict[str, list] = {k: [] for k in ("action", "observation.state", "timestamp", "frame_index", "episode_index",
                                             "index", "task_index")}
    for e, n, first, task in eps:
        a, s = episode_arrays(e, n)
        cols["action"] += a.tolist()
        cols["observation.state"] += s.tolist()
        cols["timestamp"] += (np.arange(n, dtype=np.float32) / 10).tolist()
        cols["frame_index"] += list(range(n))
        cols["episode_index"] += [e] * n
        cols["index"] += list(range(first, first + n))
        cols["task_index"] += [task] * n
    return pa.table({
        "action": pa.array(cols["action"], type=pa.list_(pa.float32(), 2)),
        "observation.state": pa.array(cols["observation.state"], type=pa.list_(pa.float32(), 3)),
        "timestamp": pa.array(cols["timestamp"], type=pa.float32()),
        "frame_index": pa.array(cols["frame_index"], type=pa.int64()),
        "episode_index": pa.array(cols["episode_index"], type=pa.int64()),
        "index": pa.array(cols["index"], type=pa.int64()),
        "task_index": pa.array(cols["task_index"], type=pa.int64()),
    })


TASKS = ["pick up the cube", "push the cube left"]


def write_lerobot_v3(root: Path, lengths: list[int], per_file: int = 3, h: int = 48, w: int = 64,
                     splits: dict | None = None, codec: str = "libx264", gop: int = 12) -> dict:
    """A v3.0 dataset: episodes ``per_file`` to an mp4 and to a data parquet (2+ files of each).

    Returns {episode: (global first frame number, length, task)} for checks.
    """
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[int, tuple[int, int, str]] = {}
    ep_rows = []
    g = 0
    for f0 in range(0, len(lengths), per_file):
        file_index = f0 // per_file
        eps = list(range(f0, min(len(lengths), f0 + per_file)))
        frames, data, t0 = [], [], 0.0
        for e in eps:
            n = lengths[e]
            task = e % len(TASKS)
            expect[e] = (g, n, TASKS[task])
            frames += [frame_img(g + i, h, w) for i in range(n)]
            data.append((e, n, g, task))
            ep_rows.append({
                "episode_index": e, "tasks": [TASKS[task]], "length": n,
                "data/chunk_index": 0, "data/file_index": file_index,
                "dataset_from_index": g, "dataset_to_index": g + n,
                f"videos/{CAMERA}/chunk_index": 0, f"videos/{CAMERA}/file_index": file_index,
                f"videos/{CAMERA}/from_timestamp": t0, f"videos/{CAMERA}/to_timestamp": t0 + n / 10,
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            })
            t0 += n / 10
            g += n
        write_mp4(root / f"videos/{CAMERA}/chunk-000/file-{file_index:03d}.mp4", frames, gop=gop, codec=codec)
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table(data), root / f"data/chunk-000/file-{file_index:03d}.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "task": TASKS}),
                   root / "meta/tasks.parquet")
    info = {
        "codebase_version": "v3.0", "robot_type": "so100", "total_episodes": len(lengths), "total_frames": g,
        "total_tasks": len(TASKS), "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
        "fps": 10, "splits": splits or {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _features(h, w),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return expect


def write_lerobot_v21(root: Path, lengths: list[int], h: int = 48, w: int = 64) -> dict:
    """A v2.1 dataset: one parquet and one mp4 per episode, meta/episodes.jsonl and tasks.jsonl."""
    expect: dict[int, tuple[int, int, str]] = {}
    g = 0
    (root / "meta").mkdir(parents=True, exist_ok=True)
    ep_lines, stats_lines = [], []
    for e, n in enumerate(lengths):
        task = e % len(TASKS)
        expect[e] = (g, n, TASKS[task])
        write_mp4(root / f"videos/chunk-000/{CAMERA}/episode_{e:06d}.mp4", [frame_img(g + i, h, w) for i in range(n)])
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table([(e, n, g, task)]), root / f"data/chunk-000/episode_{e:06d}.parquet")
        ep_lines.append(json.dumps({"episode_index": e, "tasks": [TASKS[task]], "length": n}))
        stats_lines.append(json.dumps({"episode_index": e, "stats": {}}))
        g += n
    (root / "meta/episodes.jsonl").write_text("\n".join(ep_lines) + "\n")
    (root / "meta/episodes_stats.jsonl").write_text("\n".join(stats_lines) + "\n")
    (root / "meta/tasks.jsonl").write_text("\n".join(json.dumps({"task_index": i, "task": t})
                                                     for i, t in enumerate(TASKS)) + "\n")
    info = {
        "codebase_version": "v2.1", "robot_type": "so100", "total_episodes": len(lengths), "total_frames": g,
        "total_tasks": len(TASKS), "total_videos": len(lengths), "total_chunks": 1, "chunks_size": 1000, "fps": 10,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features(h, w),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return expect


def write_robomimic(path: Path, lengths: list[int], h: int = 32, w: int = 32, env_name: str = "Lift") -> Path:
    """robomimic image dataset: data/demo_N/{actions, obs/agentview_image, obs/robot0_eef_pos, ...}, masks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    g = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": env_name, "type": 1, "env_kwargs": {"control_freq": 20}})
        data.attrs["total"] = sum(lengths)
        for e, n in enumerate(lengths):
            d = data.create_group(f"demo_{e}")
            d.attrs["num_samples"] = n
            a, s = episode_arrays(e, n)
            d.create_dataset("actions", data=a.astype(np.float64))
            d.create_dataset("obs/agentview_image", data=np.stack([frame_img(g + i, h, w) for i in range(n)]))
            d.create_dataset("obs/robot0_eef_pos", data=s.astype(np.float64))
            d.create_dataset("obs/robot0_gripper_qpos", data=a.astype(np.float64))
            g += n
        names = [f"demo_{e}" for e in range(len(lengths))]
        f.create_dataset("mask/train", data=np.array(names[:-1], dtype="S"))
        f.create_dataset("mask/valid", data=np.array(names[-1:], dtype="S"))
    return path
