"""``robomimic FILE.hdf5``: demonstrations as robomimic ships them (image datasets).

Layout read: ``data`` (attr ``env_args``: JSON with ``env_name`` and ``env_kwargs``),
``data/demo_N/actions`` float [T, A], ``data/demo_N/obs/<camera>_image`` uint8 [T, H, W, 3],
``data/demo_N/obs/<state key>`` float [T, S] (several keys are concatenated), and
``mask/<filter>``: byte strings naming demos (robomimic's ``train``/``valid`` split and subsets
such as ``20_percent``). Every clip is a robot clip without a pair (pair it to human video with
``hralign pairs pair``); its split comes from the masks and is kept per clip.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.importers.source import ClipSource, H5Frames, ImportPlan


@dataclass
class RobomimicConfig:
    """Options of the ``robomimic`` importer."""

    camera: str = field(default="agentview", metadata={"help": "Camera whose obs/<camera>_image frames are imported."})
    state_keys: str = field(default="robot0_eef_pos,robot0_eef_quat,robot0_gripper_qpos",
                            metadata={"help": "Comma-separated obs keys concatenated into the state (empty: no state)."})
    filter_key: str | None = field(default=None, metadata={"help": "Import only the demos of mask/<filter_key> "
                                                                    "(e.g. 20_percent)."})
    train_mask: str = field(default="train", metadata={"help": "Mask whose demos get split 0 (train)."})
    val_mask: str = field(default="valid", metadata={"help": "Mask whose demos get split 1 (validation)."})
    instruction: str | None = field(default=None, metadata={"help": "Instruction of every demo (default: env_args' "
                                                                    "language if any, else its env_name)."})
    source_fps: float = field(default=20.0, metadata={"help": "Frame rate the demos were recorded at (robomimic's control rate)."})

    def __post_init__(self) -> None:
        if not self.camera:
            raise HRAlignError(f"`camera` should be a camera name such as agentview but the value passed is {self.camera!r}")
        if isinstance(self.source_fps, bool) or not isinstance(self.source_fps, (int, float)) or not self.source_fps > 0:
            raise HRAlignError(f"`source_fps` should be a positive number but the value passed is {self.source_fps!r}")


def _mask(h, name: str, path: Path) -> set[str] | None:
    key = f"mask/{name}"
    if key not in h:
        return None
    return {v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(h[key][()]).ravel()}


def _json_kind(value) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _instruction(h, config: RobomimicConfig, path: Path) -> str:
    if config.instruction:
        return config.instruction
    raw = h["data"].attrs.get("env_args")
    try:
        env = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else {}
    except (TypeError, ValueError) as e:
        raise HRAlignError(f"{path}: data.attrs['env_args'] is not JSON ({e}); pass --instruction") from e
    if not isinstance(env, dict):
        raise HRAlignError(f"{path}: data.attrs['env_args'] is {_json_kind(env)}, expected an object with "
                           "env_name and env_kwargs; pass --instruction")
    kwargs = env.get("env_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise HRAlignError(f"{path}: data.attrs['env_args']['env_kwargs'] is {_json_kind(kwargs)}, "
                           "expected an object; pass --instruction")
    for k in ("lang", "language", "language_instruction", "instruction"):
        if isinstance(kwargs.get(k), str) and kwargs[k].strip():
            return kwargs[k].strip()
    if isinstance(env.get("env_name"), str) and env["env_name"].strip():
        return env["env_name"].strip()
    raise HRAlignError(f"{path}: no instruction (env_args has no env_name); pass --instruction")


def _array(g, key: str, path: Path) -> np.ndarray:
    """A numeric dataset of ``g`` as float32 [T, D] with every value finite; :class:`HRAlignError` naming
    the file, dataset and first bad row otherwise (``pairs validate`` rejects NaN/inf, so none is written)."""
    import h5py

    ds = g.get(key)
    name = f"{g.name.lstrip('/')}/{key}"
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf" or ds.ndim not in (1, 2) or ds.shape[0] == 0:
        what = "missing" if ds is None else "a group" if not isinstance(ds, h5py.Dataset) else f"{ds.dtype} {list(ds.shape)}"
        raise HRAlignError(f"{path}: {name} is {what}, expected numbers [T, D] with T >= 1")
    try:
        arr = np.asarray(ds[()], dtype=np.float32).reshape(ds.shape[0], -1)
    except (OSError, RuntimeError) as e:  # h5py's error for a corrupt chunk or filter
        raise HRAlignError(f"{path}: cannot read {name} ({e})") from e
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise HRAlignError(f"{path}: {name} row {r}[{c}] is {arr[r, c]}, expected a finite number")
    return arr


def _name_file_on_read_errors(fn):
    """h5py reports a corrupt file from wherever a read lands (OSError, RuntimeError, KeyError, ...):
    turn what escapes the plan into one line naming the file."""
    @functools.wraps(fn)
    def wrapper(root: Path, config: RobomimicConfig) -> ImportPlan:
        try:
            return fn(root, config)
        except HRAlignError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise HRAlignError(f"{root}: cannot be read as a robomimic file ({type(e).__name__}: {e})") from e
    return wrapper


@_name_file_on_read_errors
def plan(root: Path, config: RobomimicConfig) -> ImportPlan:
    """One robot clip per ``data/demo_N`` (in N order), split from the masks."""
    import h5py

    path = Path(root)
    if not path.is_file():
        raise HRAlignError(f"{path}: robomimic file not found (expected an .hdf5 with data/demo_N)")
    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise HRAlignError(f"{path}: cannot be read as HDF5 ({e})") from e
    skipped: list[tuple[str, str]] = []
    bad_demos: list[tuple[str, str]] = []
    clips: list[ClipSource] = []
    with h:
        if not isinstance(h.get("data"), h5py.Group):
            raise HRAlignError(f"{path}: no `data` group, expected robomimic's data/demo_N layout")
        demos = sorted((k for k in h["data"] if re.fullmatch(r"demo_\d+", k)), key=lambda k: int(k.split("_")[1]))
        if not demos:
            raise HRAlignError(f"{path}: `data` has no demo_N groups")
        if config.filter_key:
            keep = _mask(h, config.filter_key, path)
            if keep is None:
                found = sorted(h["mask"]) if "mask" in h else []
                raise HRAlignError(f"{path}: no mask/{config.filter_key}; masks in the file: {found or 'none'}")
            demos = [d for d in demos if d in keep]
        train, val = _mask(h, config.train_mask, path), _mask(h, config.val_mask, path)
        instruction = _instruction(h, config, path)
        image = f"{config.camera}_image"
        state_keys = [k.strip() for k in config.state_keys.split(",") if k.strip()]
        for d in demos:
            g = h["data"][d]
            if not isinstance(g, h5py.Group):
                raise HRAlignError(f"{path}: data/{d} is a dataset, expected a group with actions and obs/")
            obs = g.get("obs")
            if not isinstance(obs, h5py.Group) or image not in obs:
                cams = sorted(k[:-6] for k in obs if k.endswith("_image")) if isinstance(obs, h5py.Group) else []
                raise HRAlignError(f"{path}: data/{d}/obs has no {image}; cameras in the file: {cams or 'none'}")
            if "actions" not in g:
                raise HRAlignError(f"{path}: data/{d} has no actions")
            state = None
            if state_keys:
                missing = [k for k in state_keys if k not in obs]
                if missing:
                    raise HRAlignError(f"{path}: data/{d}/obs has no {missing}; obs keys: {sorted(obs)}")
            try:  # non-finite rows are bad input of this demo only: skipped under --skip-bad
                actions = _array(g, "actions", path)
                parts = [_array(obs, k, path) for k in state_keys]
            except HRAlignError as e:
                bad_demos.append((d, str(e)))
                continue
            if state_keys:
                bad = [f"{k} has {len(p)}" for k, p in zip(state_keys, parts) if len(p) != len(actions)]
                if bad:
                    skipped.append((d, f"{len(actions)} actions but {', '.join(bad)} rows"))
                    continue
                state = np.concatenate(parts, axis=1)
            frames = obs[image]
            if not isinstance(frames, h5py.Dataset) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                what = "a group" if not isinstance(frames, h5py.Dataset) else f"{frames.dtype} {list(frames.shape)}"
                bad_demos.append((d, f"{path}: data/{d}/obs/{image} is {what}, expected uint8 images [T, H, W, 3]"))
                continue
            n = frames.shape[0]
            if n != len(actions):
                skipped.append((d, f"{n} frames but {len(actions)} actions"))
                continue
            split = S.SPLIT_VAL if val is not None and d in val else S.SPLIT_TRAIN if train is not None and d in train else None
            clips.append(ClipSource(key=d, domain="robot", instruction=instruction,
                                    frames=H5Frames(path, f"data/{d}/obs/{image}", float(config.source_fps)),
                                    actions=actions, state=state, split=split, origin=path))
    return ImportPlan(clips=clips, skipped=skipped, bad=bad_demos)
