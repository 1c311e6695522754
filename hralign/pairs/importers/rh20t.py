"""RH20T as it ships: robot scenes and their human demonstrations, paired by scene and camera.

Layout (RH20T paper, Fang et al. 2023; loaders in the ``rh20t/rh20t_api`` repository)::

    ROOT/[RH20T_cfgN/]task_0001_user_0001_scene_0001_cfg_0001/          a robot scene
        metadata.json                         {"rating": int, "calib": ..., "finish_time": ...} (absent in some)
        cam_<serial>/color.mp4                one video per camera
        cam_<serial>/timestamps.npy           np.save of {"color": [ms, ...], "depth": [...]}: frame k of color.mp4
                                              was captured at color[k] (rh20t_api/extract.py maps them so)
        transformed/tcp.npy                   {serial: [{"timestamp": ms, "tcp": float64 (7,) xyz+quat, ...}, ...]}
        transformed/gripper.npy               {serial: {ms: {"gripper_command": [w, ...], "gripper_info": [w, ...]}}}
    ROOT/[RH20T_cfgN/]task_0001_user_0001_scene_0001_cfg_0001_human[_N]/  its human demonstration(s)
        cam_<serial>/color.mp4, cam_<serial>/timestamps.npy

The ``.npy`` files are pickles; they are read with :mod:`~hralign.pairs.importers.safe_pickle`.
Pairs follow HR-Align: the robot clip and the human clip of the same scene seen by the same camera
(``pair_key = "<scene>/cam_<serial>"``); every ``_human_N`` take pairs with the robot clip.

Per robot frame k (one row per entry of ``timestamps["color"]``, so rows match the video's frames one
to one): ``state = [tcp (7: x y z qw qx qy qz, in that camera's frame), gripper width (gripper_info[0])]``
and ``action = [tcp at frame k+1 (7; the last frame repeats its own), commanded width
(gripper_command[0])]``: an absolute next-pose target. tcp and gripper samples are taken at the
nearest timestamp (rh20t_api interpolates linearly; nearest avoids blending quaternions).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs.importers.safe_pickle import UnsafePickleError, load_pickled_npy
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment

SCENE_RE = re.compile(r"^(task_\d{4})_user_\d{4}_scene_\d{4}_cfg_\d{4}$")
HUMAN_RE = re.compile(r"^(task_\d{4}_user_\d{4}_scene_\d{4}_cfg_\d{4})_human(?:_(\d+))?$")


@dataclass
class RH20TConfig:
    """Options of ``hralign pairs import rh20t ROOT``."""

    task_descriptions: str | None = field(default=None, metadata={
        "help": "RH20T's task_description.json (task id -> {'task_description_english': ...}); "
                "without it, or for a task it lacks, the instruction is the task id (e.g. 'task_0001')."})
    cameras: str | None = field(default=None, metadata={
        "help": "Comma-separated camera serials to import (default: every camera a robot scene shares with its human scene)."})
    min_rating: int | None = field(default=None, metadata={
        "help": "Keep robot scenes whose metadata.json `rating` is at least this; when set, scenes without a rating are skipped."})
    min_length_s: float | None = field(default=None, metadata={
        "help": "Skip clips shorter than this many seconds (from timestamps.npy); a robot clip skipped takes its pairs with it."})

    def __post_init__(self) -> None:
        if self.task_descriptions is not None and not Path(self.task_descriptions).is_file():
            raise HRAlignError(f"`task_descriptions` should be an existing JSON file but the value passed is "
                               f"{self.task_descriptions!r}")
        if self.cameras is not None and not self.camera_list():
            raise HRAlignError(f"`cameras` should be comma-separated camera serials but the value passed is {self.cameras!r}")
        if self.min_rating is not None and (isinstance(self.min_rating, bool) or not isinstance(self.min_rating, int)):
            raise HRAlignError(f"`min_rating` should be an integer but the value passed is {self.min_rating!r}")
        if self.min_length_s is not None and (isinstance(self.min_length_s, bool)
                                              or not isinstance(self.min_length_s, (int, float)) or self.min_length_s < 0):
            raise HRAlignError(f"`min_length_s` should be a number >= 0 but the value passed is {self.min_length_s!r}")

    def camera_list(self) -> tuple[str, ...]:
        """The serials of ``cameras`` (strip ``cam_`` if the user wrote folder names)."""
        if self.cameras is None:
            return ()
        return tuple(c.strip().removeprefix("cam_") for c in self.cameras.split(",") if c.strip())


def load_task_descriptions(path: str | Path | None) -> dict[str, str]:
    """task id -> English instruction from RH20T's ``task_description.json`` (values may also be plain strings)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HRAlignError(f"{p}: cannot be read as JSON ({e})") from e
    if not isinstance(raw, dict) or not raw:
        raise HRAlignError(f"{p}: expected a non-empty JSON object task id -> description, found {type(raw).__name__} "
                           f"with {len(raw) if hasattr(raw, '__len__') else 0} entries")
    out = {}
    for task, value in raw.items():
        text = value.get("task_description_english") if isinstance(value, dict) else value
        if isinstance(text, str) and text.strip():
            out[str(task)] = " ".join(text.split())
    if not out:
        raise HRAlignError(f"{p}: no entry has a `task_description_english` string")
    return out


def find_scenes(root: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Robot scenes by name and human scenes (``_human``, ``_human_N``) by their robot scene's name.

    Scenes sit under ROOT or one level down (RH20T's ``RH20T_cfgN/`` folders), as downloaded.
    """
    robot: dict[str, Path] = {}
    human: dict[str, list[Path]] = {}
    candidates = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if SCENE_RE.match(d.name) or HUMAN_RE.match(d.name):
            candidates.append(d)
        else:
            candidates.extend(sorted(p for p in d.iterdir() if p.is_dir() and (SCENE_RE.match(p.name) or HUMAN_RE.match(p.name))))
    for d in candidates:
        if SCENE_RE.match(d.name):
            if d.name in robot:
                raise HRAlignError(f"{d}: robot scene {d.name} appears twice (also {robot[d.name]})")
            robot[d.name] = d
        else:
            human.setdefault(HUMAN_RE.match(d.name).group(1), []).append(d)
    return robot, human


def _cameras(scene: Path) -> dict[str, Path]:
    """serial -> cam folder holding color.mp4."""
    return {d.name.removeprefix("cam_"): d for d in sorted(scene.glob("cam_*")) if (d / "color.mp4").is_file()}


def _color_timestamps(cam: Path) -> np.ndarray:
    """Capture times (ms, int64) of color.mp4's frames, from ``timestamps.npy``'s ``color`` list."""
    path = cam / "timestamps.npy"
    meta = load_pickled_npy(path)
    if not isinstance(meta, dict) or "color" not in meta:
        raise HRAlignError(f"{path}: expected a dict with a 'color' list of timestamps, found "
                           f"{type(meta).__name__} with keys {sorted(map(str, meta))[:5] if isinstance(meta, dict) else '-'}")
    try:
        ts = np.asarray(meta["color"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise HRAlignError(f"{path}: 'color' timestamps are not integers ({e})") from e
    if ts.size == 0:
        raise HRAlignError(f"{path}: 'color' holds no timestamps")
    if (np.diff(ts) < 0).any():
        raise HRAlignError(f"{path}: 'color' timestamps are not sorted")
    return ts


def _nearest(sorted_times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into ``sorted_times`` of the nearest time for each query (checked, non-empty input)."""
    right = np.clip(np.searchsorted(sorted_times, query), 1, len(sorted_times) - 1) if len(sorted_times) > 1 else None
    if right is None:
        return np.zeros(len(query), dtype=np.int64)
    left = right - 1
    return np.where(np.abs(query - sorted_times[left]) <= np.abs(sorted_times[right] - query), left, right)


def robot_actions_state(tcp: dict, gripper: dict, serial: str, color_ms: np.ndarray, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """(actions, state), float32 of shape (len(color_ms), 8) each; see the module docstring."""
    if serial not in tcp or serial not in gripper:
        raise HRAlignError(f"{source}: camera {serial} missing from transformed/{'tcp' if serial not in tcp else 'gripper'}.npy")
    try:
        rows = sorted(tcp[serial], key=lambda r: r["timestamp"])
        tcp_ms = np.asarray([r["timestamp"] for r in rows], dtype=np.int64)
        tcp_val = np.asarray([np.asarray(r["tcp"], dtype=np.float64).reshape(-1)[:7] for r in rows], dtype=np.float64)
        g_items = sorted(gripper[serial].items())
        g_ms = np.asarray([int(t) for t, _ in g_items], dtype=np.int64)
        g_cmd = np.asarray([float(np.asarray(v["gripper_command"]).reshape(-1)[0]) for _, v in g_items])
        g_info = np.asarray([float(np.asarray(v["gripper_info"]).reshape(-1)[0]) for _, v in g_items])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise HRAlignError(f"{source}: camera {serial}: unexpected tcp/gripper layout ({type(e).__name__}: {e}); expected "
                           "tcp [{'timestamp', 'tcp' (7,)}] and gripper {ms: {'gripper_command', 'gripper_info'}}") from e
    if tcp_val.ndim != 2 or tcp_val.shape[1] != 7 or len(g_ms) == 0:
        raise HRAlignError(f"{source}: camera {serial}: expected tcp rows of 7 values and gripper samples, found tcp "
                           f"{list(tcp_val.shape)} and {len(g_ms)} gripper samples")
    pose = tcp_val[_nearest(tcp_ms, color_ms)]  # (T, 7)
    gi = _nearest(g_ms, color_ms)
    state = np.concatenate([pose, g_info[gi, None]], axis=1)
    nxt = np.concatenate([pose[1:], pose[-1:]], axis=0)
    actions = np.concatenate([nxt, g_cmd[gi, None]], axis=1)
    return actions.astype(np.float32), state.astype(np.float32)


def _rating(scene: Path) -> tuple[float | None, str | None]:
    """(rating or None, problem or None) from metadata.json."""
    path = scene / "metadata.json"
    if not path.is_file():
        return None, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path}: unreadable JSON ({e})"
    r = meta.get("rating") if isinstance(meta, dict) else None
    return (float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else None), None


def plan(root: Path, config: RH20TConfig) -> ImportPlan:
    """List RH20T's paired robot/human clips under ``root`` (nothing is decoded).

    Skipped, with the reason: robot scenes with no human scene, below ``min_rating`` or unrated when
    it is set, without readable ``transformed`` data; human scenes whose robot scene is absent or
    skipped; cameras one side lacks; clips shorter than ``min_length_s``. A pickle that would run
    code stops the import (:class:`~hralign.pairs.importers.safe_pickle.UnsafePickleError`).
    """
    root = Path(root)
    if not root.is_dir():
        raise HRAlignError(f"{root}: not a directory (expected RH20T's root with task_*_user_*_scene_*_cfg_* folders)")
    descriptions = load_task_descriptions(config.task_descriptions)
    wanted = set(config.camera_list())
    robot, human = find_scenes(root)
    if not robot and not human:
        raise HRAlignError(f"{root}: no RH20T scene folders (task_XXXX_user_XXXX_scene_XXXX_cfg_XXXX[_human]) here "
                           "or one level down")
    out = ImportPlan()
    for base, takes in human.items():
        if base not in robot:
            for h in takes:
                out.skipped.append((h.name, f"human scene has no robot partner: no folder {base} under {root}"))

    for name, scene in robot.items():
        takes = human.get(name, [])
        if not takes:
            out.skipped.append((name, "robot scene has no human scene (no folder " + name + "_human)"))
            continue
        reason = _scene_reason(scene, config)
        if reason is not None:
            out.skipped.append((name, reason))
            out.skipped.extend((h.name, f"robot partner {name} skipped: {reason}") for h in takes)
            continue
        instruction = descriptions.get(SCENE_RE.match(name).group(1), SCENE_RE.match(name).group(1))
        clips, skipped = _scene_clips(scene, takes, instruction, wanted, config)
        out.clips.extend(clips)
        out.skipped.extend(skipped)
    return out


def _scene_reason(scene: Path, config: RH20TConfig) -> str | None:
    """Why a robot scene is skipped as a whole, or None."""
    rating, problem = _rating(scene)
    if problem is not None and config.min_rating is not None:
        return problem
    if config.min_rating is not None:
        if rating is None:
            return f"no `rating` in metadata.json (--min-rating {config.min_rating} is set)"
        if rating < config.min_rating:
            return f"rating {rating:g} < --min-rating {config.min_rating}"
    for f in ("tcp.npy", "gripper.npy"):
        if not (scene / "transformed" / f).is_file():
            return f"no transformed/{f} (robot actions/state)"
    return None


def _scene_clips(scene: Path, takes: list[Path], instruction: str, wanted: set[str],
                 config: RH20TConfig) -> tuple[list[ClipSource], list[tuple[str, str]]]:
    """The paired clips of one robot scene and its human takes."""
    skipped: list[tuple[str, str]] = []
    r_cams = _cameras(scene)
    h_cams = {h: _cameras(h) for h in takes}
    if wanted:
        r_cams = {s: c for s, c in r_cams.items() if s in wanted}
        h_cams = {h: {s: c for s, c in cams.items() if s in wanted} for h, cams in h_cams.items()}
    # human clips that pass the length filter, by serial
    human_ok: dict[str, list[tuple[Path, Path]]] = {}
    for h, cams in h_cams.items():
        for serial, cam in cams.items():
            key = f"{h.name}/cam_{serial}"
            if serial not in r_cams:
                skipped.append((key, f"camera {serial} not in robot scene {scene.name}"))
                continue
            why = _length_reason(cam, config)
            if why:
                skipped.append((key, why))
                continue
            human_ok.setdefault(serial, []).append((h, cam))
    clips: list[ClipSource] = []
    tcp = gripper = None
    for serial, cam in r_cams.items():
        key = f"{scene.name}/cam_{serial}"
        if serial not in human_ok:
            skipped.append((key, f"no human take of this scene kept camera {serial}"))
            continue
        try:
            color_ms = _color_timestamps(cam)
            why = _length_reason(cam, config, color_ms)
            if why:
                skipped.append((key, why))
                skipped.extend((f"{h.name}/cam_{serial}", f"robot partner {key} skipped: {why}") for h, _ in human_ok[serial])
                continue
            if tcp is None:
                tcp = _load_dict(scene / "transformed" / "tcp.npy")
                gripper = _load_dict(scene / "transformed" / "gripper.npy")
            actions, state = robot_actions_state(tcp, gripper, serial, color_ms, scene / "transformed")
        except UnsafePickleError:
            raise
        except HRAlignError as e:
            skipped.append((key, str(e)))
            skipped.extend((f"{h.name}/cam_{serial}", f"robot partner {key} skipped") for h, _ in human_ok[serial])
            continue
        pair_key = f"{scene.name}/cam_{serial}"
        clips.append(ClipSource(key=key, domain="robot", instruction=instruction, frames=VideoSegment(cam / "color.mp4"),
                                actions=actions, state=state, step_times_s=None, pair_key=pair_key,
                                origin=scene / "transformed"))
        for h, hcam in human_ok[serial]:
            clips.append(ClipSource(key=f"{h.name}/cam_{serial}", domain="human", instruction=instruction,
                                    frames=VideoSegment(hcam / "color.mp4"), pair_key=pair_key))
    return clips, skipped


def _load_dict(path: Path) -> dict:
    obj = load_pickled_npy(path)
    if not isinstance(obj, dict):
        raise HRAlignError(f"{path}: expected a dict keyed by camera serial, found {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


def _length_reason(cam: Path, config: RH20TConfig, color_ms: np.ndarray | None = None) -> str | None:
    """Why a camera's clip is too short for ``min_length_s`` (None when kept or not filtered)."""
    if config.min_length_s is None:
        return None
    if color_ms is None:
        if not (cam / "timestamps.npy").is_file():
            return f"no timestamps.npy to measure its length (--min-length-s {config.min_length_s:g} is set)"
        try:
            color_ms = _color_timestamps(cam)
        except UnsafePickleError:
            raise
        except HRAlignError as e:
            return str(e)
    length = (color_ms[-1] - color_ms[0]) / 1000.0
    if length < config.min_length_s:
        return f"{length:.2f} s long < --min-length-s {config.min_length_s:g}"
    return None
