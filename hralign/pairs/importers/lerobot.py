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

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

V3 = ("v3.0",)
V2 = ("v2.0", "v2.1")
VAL_SPLIT_NAMES = ("val", "valid", "validation", "test")
# Placeholders LeRobot fills in info.json's path templates, per version (and a sample value to test them with).
TEMPLATE_FIELDS = {
    "v3": {"data_path": {"chunk_index": 0, "file_index": 0},
           "video_path": {"video_key": "cam", "chunk_index": 0, "file_index": 0}},
    "v2": {"data_path": {"episode_chunk": 0, "episode_index": 0},
           "video_path": {"episode_chunk": 0, "video_key": "cam", "episode_index": 0}},
}
# Names other datasets use for what LeRobot calls ``action`` / ``observation.state`` (suggested when missing).
ALTERNATIVES = {"action_key": ("action", "actions", "observation.action"),
                "state_key": ("observation.state", "state", "states", "observation.states", "observation.qpos", "qpos")}
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


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
def _kind(value) -> str:
    """How a JSON value reads in a message ("a list", "a string", ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


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


def _rows(table, name: str, where: str, file_rows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A numeric list/fixed-size-list (or scalar) column as [n, D]. Rows of another length than the
    first are refused: reshaping their concatenation would shift values between rows unnoticed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    is_list = pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type)
    value_type = col.type.value_type if is_list else col.type
    if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type) or pa.types.is_boolean(value_type)):
        raise HRAlignError(f"{where}: column `{name}` holds {col.type}, expected numbers or fixed-length lists of numbers")
    def numbers(arr) -> np.ndarray:  # via float64, so nulls (of any numeric type) become NaN, refused by _check_finite
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by _check_finite too
            return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=dtype)

    if not is_list:
        return numbers(col).reshape(-1, 1)
    lengths = pc.list_value_length(col).fill_null(-1).to_numpy()
    if len(lengths) == 0:
        return np.zeros((0, 0), dtype)
    width = int(lengths[0])
    if width <= 0:
        raise HRAlignError(f"{where}, row {file_rows[0]}: `{name}` is {'null' if width < 0 else 'empty'}, "
                           "expected a non-empty vector")
    odd = np.nonzero(lengths != width)[0]
    if odd.size:
        r = int(odd[0])
        found = "is null" if lengths[r] < 0 else f"has {lengths[r]} values"
        raise HRAlignError(f"{where}, row {file_rows[r]}: `{name}` {found} but row {file_rows[0]} has {width}")
    flat = numbers(col.flatten())
    return flat.reshape(len(lengths), width)


def _check_finite(rows: np.ndarray, name: str, where: str, file_rows: np.ndarray) -> None:
    """Refuse NaN/inf (and nulls, read as NaN): ``pairs validate`` rejects them, so they are never written."""
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise HRAlignError(f"{where}, row {file_rows[r]}: `{name}`[{c}] is {rows[r, c]} (NaN, inf, null or beyond "
                           "float32), expected a finite number")


def _read_jsonl(path: Path) -> list[dict]:
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
                row = json.loads(line)
            except ValueError as e:
                raise HRAlignError(f"{path}: line {i} is not JSON ({e})") from e
            if not isinstance(row, dict):
                raise HRAlignError(f"{path}: line {i} is {_kind(row)}, expected an object")
            rows.append(row)
    return rows


def _format(info_path: Path, key: str, template, values: dict) -> str:
    """``template.format(**values)`` as LeRobot fills info.json's path templates; a template it could not
    fill is one line naming the key and the placeholders it may use."""
    if not isinstance(template, str):
        raise HRAlignError(f"{info_path}: `{key}` is {_kind(template)}, expected a path template string")
    why = None
    try:
        rel = template.format(**values)
    except KeyError as e:
        why = f"unknown placeholder {{{e.args[0]}}}"
    except IndexError:
        why = "a positional placeholder {}"
    except (ValueError, TypeError, AttributeError) as e:
        why = f"a placeholder that cannot be filled with {values} ({e})"
    if why is None:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # lexical: a dataset's files live under its root
            raise HRAlignError(f"{info_path}: `{key}` {template!r} gives {rel!r}, outside the dataset root; "
                               "expected a relative path without '..'")
        return rel
    raise HRAlignError(f"{info_path}: `{key}` {template!r} has {why}; expected the placeholders "
                       + ", ".join("{" + k + "}" for k in values))


def read_info(root: Path) -> dict:
    """``meta/info.json``, checked for the keys the importer uses (types and path templates too)."""
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise HRAlignError(f"{path}: not found; expected a LeRobotDataset root (meta/info.json, data/, videos/)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HRAlignError(f"{path}: not JSON ({e})") from e
    if not isinstance(info, dict):
        raise HRAlignError(f"{path}: top level is {_kind(info)}, expected an object (codebase_version, fps, features, ...)")
    version = info.get("codebase_version")
    if not isinstance(version, str) or version not in V3 + V2:
        raise HRAlignError(f"{path}: codebase_version {version!r}, expected one of {', '.join(V3 + V2)}")
    for key in ("fps", "features", "data_path", "video_path"):
        if key not in info:
            raise HRAlignError(f"{path}: no `{key}`, expected it in a LeRobotDataset {version} info.json")
    if not isinstance(info["features"], dict):
        raise HRAlignError(f"{path}: `features` is {_kind(info['features'])}, expected an object mapping each "
                           "feature name to {dtype, shape, names}")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise HRAlignError(f"{path}: `fps` is {fps!r}, expected a positive number")
    for key, sample in TEMPLATE_FIELDS["v3" if version in V3 else "v2"].items():
        if info[key] is not None or key != "video_path":  # video_path is null in image-only datasets (refused later)
            _format(path, key, info[key], sample)
    chunks = info.get("chunks_size", 1000)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise HRAlignError(f"{path}: `chunks_size` is {chunks!r}, expected a positive integer")
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


def _missing_feature(root: Path, features: dict, option: str, wanted: str) -> HRAlignError:
    """The error for an action/state column the dataset lacks, naming the likely key and the option to pass."""
    numeric = [k for k, v in features.items()
               if isinstance(v, dict) and v.get("dtype") not in ("video", "image", "string") and k not in BOOKKEEPING]
    word = wanted.split(".")[-1]
    guesses = ([k for k in ALTERNATIVES[option] if k in numeric] + difflib.get_close_matches(wanted, numeric, 1, 0.5)
               + [k for k in numeric if word in k])
    flag = "--" + option.replace("_", "-")
    hint = f"did you mean {guesses[0]!r}? pass {flag} {guesses[0]}" if guesses else f"pass {flag} with one of them"
    return HRAlignError(f"{root}/meta/info.json: no feature {wanted!r} ({flag}); features: {sorted(features)}; "
                        f"{hint} ({flag} '' imports none)")


def _splits(info: dict, root: Path) -> dict[int, int]:
    """episode -> split from info.json's ``splits`` ("name": "start:stop"), when it has a validation part."""
    splits = info.get("splits") or {}
    if not isinstance(splits, dict):
        raise HRAlignError(f"{root}/meta/info.json: `splits` is {_kind(splits)}, expected an object such as "
                           '{"train": "0:40", "val": "40:50"}')
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


def _episode_arrays(table, rows: np.ndarray, config: LeRobotConfig, where: str):
    """(timestamps from 0, actions, state) of the table rows ``rows`` (row numbers in the file), in time
    order; ragged, non-numeric or non-finite rows are an :class:`HRAlignError` naming ``where`` and the row."""
    if rows.size == 0:
        raise HRAlignError(f"{where}: no data rows")
    sub = table.take(rows)
    ts = _rows(sub, "timestamp", where, rows, np.float64)
    _check_finite(ts, "timestamp", where, rows)
    arrays = []
    for key in (config.action_key, config.state_key):
        a = _rows(sub, key, where, rows) if key else None
        if a is not None:
            _check_finite(a, key, where, rows)
        arrays.append(a)
    ts = ts[:, 0]
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    return ts - ts[0], *(None if a is None else a[order] for a in arrays)


def _first_task(tasks) -> str | None:
    """An episode's instruction: the first of its ``tasks`` (a bare string counts as one task)."""
    if isinstance(tasks, str):
        return tasks or None
    if isinstance(tasks, (list, tuple)) and tasks and isinstance(tasks[0], str) and tasks[0].strip():
        return tasks[0]
    return None


def plan(root: Path, config: LeRobotConfig) -> ImportPlan:
    """One robot clip per episode (see the module docstring).

    An episode whose own files are bad (a missing or unreadable data parquet or video, ragged or
    non-finite rows) goes to ``ImportPlan.bad``: the import stops on it unless ``--skip-bad``.
    """
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a folder; expected a LeRobotDataset root")
    info = read_info(root)
    cam = _camera(info, config, root)
    if info["video_path"] is None:
        raise HRAlignError(f"{root}/meta/info.json: `video_path` is null, expected a path template for {cam}")
    for option in ("action_key", "state_key"):
        k = getattr(config, option)
        if k and k not in info["features"]:
            raise _missing_feature(root, info["features"], option, k)
    columns = ["timestamp", *(k for k in (config.action_key, config.state_key) if k)]
    if info["codebase_version"] in V3:
        return _plan_v3(root, info, cam, columns, config)
    return _plan_v2(root, info, cam, columns, config)


def _ep_number(ep: dict, key: str, where: str, integer: bool = True):
    """``ep[key]`` checked to be an integer (or a finite number): one line naming the episode otherwise."""
    v = ep.get(key)
    ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
    if isinstance(v, bool) or not ok or v < 0:
        raise HRAlignError(f"{where}: `{key}` is {v!r}, expected a non-negative {'integer' if integer else 'number'}")
    return v


def _plan_v3(root: Path, info: dict, cam: str, columns: list[str], config: LeRobotConfig) -> ImportPlan:
    info_path = root / "meta" / "info.json"
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise HRAlignError(f"{root}/meta/episodes: no chunk-*/file-*.parquet, expected the v3.0 episode index")
    vk = f"videos/{cam}/"
    need = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
            "dataset_to_index", vk + "chunk_index", vk + "file_index", vk + "from_timestamp", vk + "to_timestamp"]
    episodes: dict[int, tuple[dict, str]] = {}  # episode -> (row, "file: episode N") for messages
    for f in files:
        for i, ep in enumerate(_read_parquet(f, need).select(need).to_pylist()):
            e = _ep_number(ep, "episode_index", f"{f}: row {i}")
            if e in episodes:
                raise HRAlignError(f"{f}: row {i}: episode {e} appears twice in meta/episodes")
            episodes[e] = (ep, f"{f}: episode {e}")
    splits = _splits(info, root)
    skipped: list[tuple[str, str]] = []
    bad: list[tuple[str, str]] = []
    by_file: dict[tuple[int, int], list[int]] = {}
    for e in sorted(episodes):
        ep, where = episodes[e]
        try:
            for k in need[2:9]:
                _ep_number(ep, k, where)
            for k in need[9:]:
                _ep_number(ep, k, where, integer=False)
        except HRAlignError as err:
            bad.append((f"episode_{e:06d}", str(err)))
            continue
        if ep["length"] < config.min_frames:
            skipped.append((f"episode_{e:06d}", f"{ep['length']} frames < --min-frames {config.min_frames}"))
            continue
        by_file.setdefault((ep["data/chunk_index"], ep["data/file_index"]), []).append(e)
    prepared: dict[int, ClipSource] = {}
    for (chunk, file), eps in by_file.items():  # each data file read once
        dpath = root / _format(info_path, "data_path", info["data_path"], {"chunk_index": chunk, "file_index": file})
        try:
            table = _read_parquet(dpath, ["index", *columns])
            index = _rows(table, "index", str(dpath), np.arange(table.num_rows), np.float64)[:, 0]
        except HRAlignError as err:  # a missing or unreadable data file: its episodes are bad, like a missing video
            bad.extend((f"episode_{e:06d}", str(err)) for e in eps)
            continue
        for e in eps:
            ep = episodes[e][0]
            key = f"episode_{e:06d}"
            lo, hi = ep["dataset_from_index"], ep["dataset_to_index"]
            try:
                rows = np.nonzero((index >= lo) & (index < hi))[0]
                if not rows.size:
                    raise HRAlignError(f"{dpath}: no rows with index in [{lo}, {hi}) for episode {e}")
                times, actions, state = _episode_arrays(table, rows, config, f"{dpath}: episode {e}")
                vpath = root / _format(info_path, "video_path", info["video_path"],
                                       {"video_key": cam, "chunk_index": ep[vk + "chunk_index"],
                                        "file_index": ep[vk + "file_index"]})
                if not vpath.is_file():
                    raise HRAlignError(f"{vpath}: video not found (episode {e})")
                instruction = _first_task(ep["tasks"])
                if instruction is None:
                    raise HRAlignError(f"{episodes[e][1]}: `tasks` is {ep['tasks']!r}, expected a list of task texts")
            except HRAlignError as err:
                bad.append((key, str(err)))
                continue
            start = float(ep[vk + "from_timestamp"])
            # LeRobot reads an episode's frames at from_timestamp + each row's timestamp; datasets write
            # to_timestamp as from + length/fps or from + (length-1)/fps: end one frame after the last row
            # either way, so no episode loses its last frame.
            end = max(float(ep[vk + "to_timestamp"]), start + float(times[-1]) + 1.0 / float(info["fps"]))
            prepared[e] = ClipSource(
                key=key, domain="robot", instruction=instruction, frames=VideoSegment(vpath, start, end),
                actions=actions, state=state, step_times_s=times, split=splits.get(e), origin=dpath)
    clips = [prepared[k] for k in sorted(prepared)]
    return ImportPlan(clips=clips, skipped=skipped, bad=sorted(bad))


def _plan_v2(root: Path, info: dict, cam: str, columns: list[str], config: LeRobotConfig) -> ImportPlan:
    info_path = root / "meta" / "info.json"
    ep_path = root / "meta" / "episodes.jsonl"
    episodes = _read_jsonl(ep_path)
    if not episodes:
        raise HRAlignError(f"{ep_path}: empty, expected one line per episode")
    for i, ep in enumerate(episodes, start=1):
        _ep_number(ep, "episode_index", f"{ep_path}: episode line {i}")
    episodes.sort(key=lambda ep: ep["episode_index"])
    tasks: dict[int, str] = {}
    for t in _read_jsonl(root / "meta" / "tasks.jsonl"):
        if isinstance(t.get("task_index"), int) and isinstance(t.get("task"), str):
            tasks[t["task_index"]] = t["task"]
    chunks_size = info.get("chunks_size", 1000)
    splits = _splits(info, root)
    clips: list[ClipSource] = []
    skipped: list[tuple[str, str]] = []
    bad: list[tuple[str, str]] = []
    for ep in episodes:
        e = ep["episode_index"]
        key = f"episode_{e:06d}"
        length = ep.get("length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise HRAlignError(f"{ep_path}: episode {e} has length {length!r}, expected an integer")
        if isinstance(length, int) and length < config.min_frames:
            skipped.append((key, f"{length} frames < --min-frames {config.min_frames}"))
            continue
        chunk = e // chunks_size
        dpath = root / _format(info_path, "data_path", info["data_path"], {"episode_chunk": chunk, "episode_index": e})
        vpath = root / _format(info_path, "video_path", info["video_path"],
                               {"episode_chunk": chunk, "video_key": cam, "episode_index": e})
        try:
            table = _read_parquet(dpath, columns)
            times, actions, state = _episode_arrays(table, np.arange(table.num_rows), config, f"{dpath}: episode {e}")
            if not vpath.is_file():
                raise HRAlignError(f"{vpath}: video not found (episode {e})")
        except HRAlignError as err:  # a missing data file or video: the episode is bad (skipped under --skip-bad)
            bad.append((key, str(err)))
            continue
        instruction = _first_task(ep.get("tasks"))
        if instruction is None and "task_index" in table.column_names:
            instruction = tasks.get(table.column("task_index")[0].as_py())
        if not instruction:
            raise HRAlignError(f"{ep_path}: episode {e} has no tasks")
        clips.append(ClipSource(key=key, domain="robot", instruction=str(instruction), frames=VideoSegment(vpath),
                                actions=actions, state=state, step_times_s=times, split=splits.get(e), origin=dpath))
    return ImportPlan(clips=clips, skipped=skipped, bad=bad)
