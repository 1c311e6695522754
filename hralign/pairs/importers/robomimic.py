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


def _instruction(h, config: RobomimicConfig, path: Path) -> str:
    if config.instruction:
        return config.instruction
    raw = h["data"].attrs.get("env_args")
    try:
        env = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else {}
    except (TypeError, ValueError) as e:
        raise HRAlignError(f"{path}: data.attrs['env_args'] is not JSON ({e}); pass --instruction") from e
    kwargs = env.get("env_kwargs") or {}
    for k in ("lang", "language", "language_instruction", "instruction"):
        if isinstance(kwargs.get(k), str) and kwargs[k].strip():
            return kwargs[k].strip()
    if isinstance(env.get("env_name"), str) and env["env_name"].strip():
        return env["env_name"].strip()
    raise HRAlignError(f"{path}: no instruction (env_args has no env_name); pass --instruction")


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
    clips: list[ClipSource] = []
    with h:
        if "data" not in h:
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
                raise HRAlignError(f"{path}: data/{d} is a {type(g).__name__}, expected a group with actions and obs/")
            obs = g.get("obs")
            if obs is None or image not in obs:
                cams = sorted(k[:-6] for k in obs if k.endswith("_image")) if obs is not None else []
                raise HRAlignError(f"{path}: data/{d}/obs has no {image}; cameras in the file: {cams or 'none'}")
            if "actions" not in g:
                raise HRAlignError(f"{path}: data/{d} has no actions")
            actions = np.asarray(g["actions"][()], dtype=np.float32)
            if actions.ndim != 2:
                raise HRAlignError(f"{path}: data/{d}/actions has shape {list(actions.shape)}, expected [T, A]")
            state = None
            if state_keys:
                missing = [k for k in state_keys if k not in obs]
                if missing:
                    raise HRAlignError(f"{path}: data/{d}/obs has no {missing}; obs keys: {sorted(obs)}")
                parts = [np.asarray(obs[k][()], dtype=np.float32) for k in state_keys]
                bad = [f"{k} has {len(p)}" for k, p in zip(state_keys, parts) if len(p) != len(actions)]
                if bad:
                    skipped.append((d, f"{len(actions)} actions but {', '.join(bad)} rows"))
                    continue
                state = np.concatenate([p.reshape(len(actions), -1) for p in parts], axis=1)
            n = obs[image].shape[0]
            if n != len(actions):
                skipped.append((d, f"{n} frames but {len(actions)} actions"))
                continue
            split = S.SPLIT_VAL if val is not None and d in val else S.SPLIT_TRAIN if train is not None and d in train else None
            clips.append(ClipSource(key=d, domain="robot", instruction=instruction,
                                    frames=H5Frames(path, f"data/{d}/obs/{image}", float(config.source_fps)),
                                    actions=actions, state=state, split=split))
    return ImportPlan(clips=clips, skipped=skipped)
