"""``lerobot ROOT``: a LeRobotDataset folder exactly as the Hub ships it, v3.0 or v2.1 (pyarrow only).

v3.0 (``meta/info.json`` ``codebase_version: "v3.0"``):
  ``meta/tasks.parquet`` (``task_index`` and the ``task`` text, pandas' named index),
  ``meta/episodes/chunk-*/file-*.parquet`` (one row per episode: ``episode_index``, ``tasks``,
  ``length``, ``data/chunk_index``, ``data/file_index``, ``dataset_from_index``,
  ``dataset_to_index``, ``videos/<key>/chunk_index``, ``videos/<key>/file_index``,
  ``videos/<key>/from_timestamp``, ``videos/<key>/to_timestamp``),
  ``data/chunk-*/file-*.parquet`` (rows of many episodes: ``index``, ``episode_index``,
  ``timestamp``, ``action``, ``observation.state``, ``task_index``) and
  ``videos/<key>/chunk-*/file-*.mp4`` holding many episodes one after the other: an episode is
  cut from its file by ``[from_timestamp, to_timestamp)``.
v2.1 (and v2.0): ``meta/episodes.jsonl``, ``meta/tasks.jsonl``, one parquet and one mp4 per
  episode at ``info.json``'s ``data_path``/``video_path`` templates (``episode_chunk`` =
  ``episode_index // chunks_size``).

Paths come from ``info.json``'s templates, as LeRobot resolves them. Every episode becomes a
robot clip (one camera) with ``action``/``observation.state`` rows timed by ``timestamp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

V3 = ("v3.0",)
V2 = ("v2.0", "v2.1")
VAL_SPLIT_NAMES = ("val", "valid", "validation", "test")


@dataclass
class LeRobotConfig:
    """Options of the ``lerobot`` importer."""

    camera: str | None = field(default=None, metadata={"help": "Video feature imported, e.g. observation.images.top "
                                                               "(default: the first video feature of meta/info.json)."})
    action_key: str = field(default="action", metadata={"help": "Column imported as actions (empty: none)."})
    state_key: str = field(default="observation.state", metadata={"help": "Column imported as state (empty: none)."})
    min_frames: int = field(default=1, metadata={"help": "Skip episodes shorter than this many frames (before --fps)."})

    def __post_init__(self) -> None:
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise HRAlignError(f"`min_frames` should be a positive integer but the value passed is {self.min_frames!r}")


# -- reading (pyarrow is imported inside: listing importers should not load it) ---------------------
def _read_parquet(path: Path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise HRAlignError(f"{path}: parquet file not found")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...: all mean "unreadable"
        raise HRAlignError(f"{path}: cannot read parquet ({type(e).__name__}: {e})") from e
    if columns:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise HRAlignError(f"{path}: no column {missing}; columns: {table.column_names}")
    return table


def _rows(table, name: str, path: Path, n: int) -> np.ndarray:
    """A list/fixed-size-list (or scalar) column as float32 [n, D]."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        if n == 0 or flat.size % n:
            raise HRAlignError(f"{path}: column {name} has rows of different lengths, expected a fixed-size vector")
        return flat.reshape(n, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, 1)


def _read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise HRAlignError(f"{path}: not found (a v2.1 LeRobotDataset has meta/episodes.jsonl and meta/tasks.jsonl)")
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HRAlignError(f"{path}: not UTF-8 text ({e}); expected one JSON object per line") from e
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise HRAlignError(f"{path}: line {i} is not JSON ({e})") from e
            if not isinstance(rows[-1], dict) or not all(isinstance(rows[-1].get(k), int) for k in keys):
                raise HRAlignError(f"{path}: line {i} is {line[:60]!r}, expected a JSON object with integer "
                                   f"{', '.join(keys)}")
    return rows


def read_info(root: Path) -> dict:
    """``meta/info.json``, checked for the keys the importer uses."""
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise HRAlignError(f"{path}: not found; expected a LeRobotDataset root (meta/info.json, data/, videos/)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HRAlignError(f"{path}: not JSON ({e})") from e
    version = info.get("codebase_version")
    if version not in V3 + V2:
        raise HRAlignError(f"{path}: codebase_version {version!r}, expected one of {', '.join(V3 + V2)}")
    for key in ("fps", "features", "data_path", "video_path"):
        if key not in info:
            raise HRAlignError(f"{path}: no `{key}`, expected it in a LeRobotDataset {version} info.json")
    return info


def _camera(info: dict, config: LeRobotConfig, root: Path) -> str:
    videos = [k for k, v in info["features"].items() if isinstance(v, dict) and v.get("dtype") == "video"]
    if config.camera is None:
        if not videos:
            raise HRAlignError(f"{root}/meta/info.json: no feature of dtype video (image datasets are not supported)")
        return videos[0]
    if config.camera not in videos:
        raise HRAlignError(f"{root}/meta/info.json: camera {config.camera!r} is not a video feature; "
                           f"video features: {videos or 'none'}")
    return config.camera


def _splits(info: dict) -> dict[int, int]:
    """episode -> split from info.json's ``splits`` ("name": "start:stop"), when it has a validation part."""
    splits = info.get("splits") or {}
    if not any(k in splits for k in VAL_SPLIT_NAMES):
        return {}
    out: dict[int, int] = {}
    for name, rng in splits.items():
        try:
            lo, hi = (int(x) for x in str(rng).split(":"))
        except ValueError:
            continue
        for ep in range(lo, hi):
            out[ep] = S.SPLIT_VAL if name in VAL_SPLIT_NAMES else S.SPLIT_TRAIN
    return out


def _episode_arrays(table, path: Path, config: LeRobotConfig, mask: np.ndarray):
    """(timestamps from 0, actions, state) of the rows ``mask`` of a data table."""
    sub = table.filter(mask)
    n = sub.num_rows
    ts = np.asarray(sub.column("timestamp").to_numpy(), dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    arrays = []
    for key in (config.action_key, config.state_key):
        arrays.append(_rows(sub, key, path, n)[order] if key else None)
    ts = ts[order]
    return ts - ts[0], arrays[0], arrays[1]


def plan(root: Path, config: LeRobotConfig) -> ImportPlan:
    """One robot clip per episode (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a folder; expected a LeRobotDataset root")
    info = read_info(root)
    cam = _camera(info, config, root)
    columns = ["timestamp", *(k for k in (config.action_key, config.state_key) if k)]
    for k in columns[1:]:
        if k not in info["features"]:
            raise HRAlignError(f"{root}/meta/info.json: no feature {k!r}; features: {sorted(info['features'])}")
    if info["codebase_version"] in V3:
        return _plan_v3(root, info, cam, columns, config)
    return _plan_v2(root, info, cam, columns, config)


def _plan_v3(root: Path, info: dict, cam: str, columns: list[str], config: LeRobotConfig) -> ImportPlan:
    import pyarrow as pa

    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise HRAlignError(f"{root}/meta/episodes: no chunk-*/file-*.parquet, expected the v3.0 episode index")
    vk = f"videos/{cam}/"
    need = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
            "dataset_to_index", vk + "chunk_index", vk + "file_index", vk + "from_timestamp", vk + "to_timestamp"]
    episodes = pa.concat_tables([_read_parquet(f, need).select(need) for f in files]).to_pylist()
    episodes.sort(key=lambda e: e["episode_index"])
    splits = _splits(info)
    clips: list[ClipSource] = []
    skipped: list[tuple[str, str]] = []
    by_file: dict[tuple[int, int], list[dict]] = {}
    for ep in episodes:
        by_file.setdefault((ep["data/chunk_index"], ep["data/file_index"]), []).append(ep)
    prepared: dict[int, ClipSource] = {}
    for (chunk, file), eps in by_file.items():  # each data file read once
        dpath = root / info["data_path"].format(chunk_index=chunk, file_index=file)
        table = _read_parquet(dpath, ["index", *columns])
        index = table.column("index").to_numpy()
        for ep in eps:
            key = f"episode_{ep['episode_index']:06d}"
            if ep["length"] < config.min_frames:
                skipped.append((key, f"{ep['length']} frames < --min-frames {config.min_frames}"))
                continue
            mask = (index >= ep["dataset_from_index"]) & (index < ep["dataset_to_index"])
            if not mask.any():
                raise HRAlignError(f"{dpath}: no rows with index in [{ep['dataset_from_index']}, {ep['dataset_to_index']}) "
                                   f"for episode {ep['episode_index']}")
            times, actions, state = _episode_arrays(table, dpath, config, pa.array(mask))
            vpath = root / info["video_path"].format(video_key=cam, chunk_index=ep[vk + "chunk_index"],
                                                     file_index=ep[vk + "file_index"])
            if not vpath.is_file():
                skipped.append((key, f"video {vpath} not found"))
                continue
            tasks = ep["tasks"] or []
            if not tasks:
                raise HRAlignError(f"{files[0].parent.parent}: episode {ep['episode_index']} has no tasks")
            prepared[ep["episode_index"]] = ClipSource(
                key=key, domain="robot", instruction=str(tasks[0]),
                frames=VideoSegment(vpath, float(ep[vk + "from_timestamp"]), float(ep[vk + "to_timestamp"])),
                actions=actions, state=state, step_times_s=times, split=splits.get(ep["episode_index"]))
    clips = [prepared[k] for k in sorted(prepared)]
    return ImportPlan(clips=clips, skipped=skipped)


def _plan_v2(root: Path, info: dict, cam: str, columns: list[str], config: LeRobotConfig) -> ImportPlan:
    import pyarrow as pa

    episodes = sorted(_read_jsonl(root / "meta" / "episodes.jsonl", ("episode_index",)), key=lambda e: e["episode_index"])
    if not episodes:
        raise HRAlignError(f"{root}/meta/episodes.jsonl: empty, expected one line per episode")
    tasks = {t["task_index"]: str(t.get("task")) for t in _read_jsonl(root / "meta" / "tasks.jsonl", ("task_index",))}
    chunks_size = info.get("chunks_size", 1000)
    if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size < 1:
        raise HRAlignError(f"{root}/meta/info.json: chunks_size {chunks_size!r}, expected a positive integer")
    splits = _splits(info)
    clips: list[ClipSource] = []
    skipped: list[tuple[str, str]] = []
    for ep in episodes:
        e = int(ep["episode_index"])
        key = f"episode_{e:06d}"
        length = ep.get("length", config.min_frames)
        if isinstance(length, bool) or not isinstance(length, int):
            raise HRAlignError(f"{root}/meta/episodes.jsonl: episode {e} has length {length!r}, expected an integer")
        if length < config.min_frames:
            skipped.append((key, f"{ep['length']} frames < --min-frames {config.min_frames}"))
            continue
        chunk = e // chunks_size
        dpath = root / info["data_path"].format(episode_chunk=chunk, episode_index=e)
        vpath = root / info["video_path"].format(episode_chunk=chunk, video_key=cam, episode_index=e)
        table = _read_parquet(dpath, columns)
        times, actions, state = _episode_arrays(table, dpath, config, pa.array(np.ones(table.num_rows, bool)))
        if not vpath.is_file():
            skipped.append((key, f"video {vpath} not found"))
            continue
        instruction = (ep.get("tasks") or [None])[0]
        if instruction is None and "task_index" in table.column_names and table.num_rows:
            instruction = tasks.get(int(table.column("task_index")[0].as_py()))
        if not instruction:
            raise HRAlignError(f"{root}/meta/episodes.jsonl: episode {e} has no tasks")
        clips.append(ClipSource(key=key, domain="robot", instruction=str(instruction), frames=VideoSegment(vpath),
                                actions=actions, state=state, step_times_s=times, split=splits.get(e)))
    return ImportPlan(clips=clips, skipped=skipped)
