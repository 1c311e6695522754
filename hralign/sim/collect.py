"""``collect``: scripted-expert MetaWorld rollouts rendered twice per step into one pairs file.

Each step is rendered as the robot sees it (standard look) and as a "human" view of the same state
(arm re-skinned in skin tones, gripper hidden, another table colour), by default from the same
camera: HR-Align's RH20T pairs were filtered to share a view (Zhou et al., 2024), and
``human_camera`` gives the cross-view setting. Pairs are frame-aligned; both views carry the same
per-frame actions and proprioception. Goals and action noise come from generators seeded with
(seed, task, episode), so the same config gives the same content (:func:`content_hash`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hralign.config_checks import check_choice, check_fraction, check_int, check_ints, check_number
from hralign.errors import HRAlignError
from hralign.pairs import PairsWriter
from hralign.pairs.split import DEFAULT_VAL_FRACTION
from hralign.sim.env import (
    SimEnv,
    check_frame,
    env_name,
    instruction,
    seed_rng,
    short_name,
)

SIM_ATTR = "hralign_sim"
VIEWS = ("both", "human")  # root attribute: JSON with the collect config and per-clip goals


def _parse_tasks(tasks: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = tuple(t.strip() for t in tasks.split(",") if t.strip())
    return tuple(tasks)


@dataclass
class CollectConfig:
    """What to roll out and how to render it."""

    tasks: tuple[str, ...] | str = field(default=("push", "sweep-into"), metadata={
        "help": "MetaWorld tasks, comma-separated ('-v3' optional); default: the vision-dependent pair chosen by "
                "measurement (docs/sim.md)."})
    episodes: int = field(default=20, metadata={"help": "Successful expert episodes kept per task."})
    image_size: int = field(default=96, metadata={
        "help": "Square render size in pixels (96 px: measured in docs/sim.md; goals are a few pixels at 64)."})
    camera: str = field(default="corner", metadata={"help": "Camera of the robot view."})
    human_camera: str | None = field(default=None, metadata={
        "help": "Camera of the human view (default: the robot's camera; another one = cross-view setting)."})
    seed: int = field(default=0, metadata={"help": "Seed of goals and action noise (same seed -> same file content)."})
    noise: float = field(default=0.05, metadata={"help": "Std of Gaussian noise added to the expert's actions."})
    max_steps: int = field(default=200, metadata={"help": "Step limit of an episode (MetaWorld allows 500)."})
    tail_steps: int = field(default=5, metadata={"help": "Steps kept after the first success."})
    val_fraction: float = field(default=DEFAULT_VAL_FRACTION, metadata={
        "help": "Share of each task's episodes (its last ones) marked validation in /split: held out from adaptation."})
    max_attempts: int = field(default=3, metadata={
        "help": "Episodes tried per kept episode before giving up (failed expert episodes are dropped)."})
    views: str = field(default="both", metadata={
        "help": "both = paired robot + human views; human = human view only (a human-video corpus for pretraining: "
                "no robot clips, no pairs)."})
    vary_look: bool = field(default=False, metadata={
        "help": "Draw the human look per episode (skin tone, sleeve, table colour/texture, light, camera jitter) "
                "instead of the one fixed look."})

    def __post_init__(self) -> None:
        self.tasks = _parse_tasks(self.tasks)
        if not self.tasks:
            raise HRAlignError("`tasks` should name at least one MetaWorld task but the value passed is empty")
        check_ints(self, ("episodes", "max_steps", "max_attempts"), 1)
        check_int(self.image_size, "image_size", 16)
        check_int(self.tail_steps, "tail_steps", 0)
        check_fraction(self.val_fraction)
        check_choice(self.views, "views", VIEWS)
        check_number(self.noise, "noise", 0, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @property
    def val_episodes(self) -> int:
        """Validation episodes per task: round(episodes x val_fraction), at least 1 and leaving 1 for training."""
        if self.val_fraction <= 0 or self.episodes < 2:
            return 0
        return min(self.episodes - 1, max(1, round(self.episodes * self.val_fraction)))


def expert_episode(env: SimEnv, goal: np.ndarray, rng: np.random.Generator, cfg: CollectConfig,
                   render: bool = True, look: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One noisy expert episode from ``goal``: frames of both views [T, S, S, 3], actions [T, 4], state [T, 4].

    Frame t is rendered before action t is taken (the observation the action answers). ``look``:
    the human view's appearance (default: the fixed human look); ``cfg.views == "human"`` skips the
    robot view.
    """
    robot_view = cfg.views == "both"
    obs = env.reset(goal)
    robot, human, actions, state = [], [], [], []
    success_at = None
    for t in range(cfg.max_steps):
        if render:
            if robot_view:
                robot.append(env.render(human=False))
            human.append(env.render(human=True, camera=cfg.human_camera, look=look))
        a = env.expert_action(obs)
        if cfg.noise > 0:
            a = a + rng.normal(0.0, cfg.noise, size=a.shape).astype(np.float32)
        a = np.clip(a, -1.0, 1.0).astype(np.float32)
        state.append(env.proprio(obs))
        actions.append(a)
        obs, success = env.step(a)
        if success and success_at is None:
            success_at = t
        if success_at is not None and t >= success_at + cfg.tail_steps:
            break
    out = {"actions": np.stack(actions), "state": np.stack(state), "success": success_at is not None,
           "success_step": success_at}
    if render:
        out["human"] = np.stack(human)
        if robot_view:
            out["robot"] = np.stack(robot)
    return out


def collect(out: str | Path, config: CollectConfig | None = None, overwrite: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Roll out the scripted experts and write ``out`` (a pairs file); returns a summary with renders/s."""
    cfg = config or CollectConfig()
    names = [env_name(t) for t in cfg.tasks]  # fail on an unknown task before any work
    summary: dict[str, Any] = {"out": str(out), "tasks": {}, "renders": 0}
    clips_meta: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names) * cfg.episodes, desc="sim collect", unit="episode", dynamic_ncols=True)
    t_all = time.perf_counter()
    with PairsWriter(out, overwrite=overwrite) as w:
        for ti, name in enumerate(names):
            env = SimEnv(name, cfg.image_size, cfg.camera)  # one env per task, reset between episodes
            if cfg.human_camera is not None and cfg.human_camera not in env.cameras:
                raise HRAlignError(f"--human-camera {cfg.human_camera!r}: not a camera of {name}; known: "
                                   f"{', '.join(env.cameras)}")
            task_id = w.add_task(instruction(name))
            kept, tried, t0 = 0, 0, time.perf_counter()
            while kept < cfg.episodes:
                if tried >= cfg.episodes * cfg.max_attempts:
                    raise HRAlignError(f"task {short_name(name)}: the scripted expert succeeded in {kept} of {tried} "
                                       f"episodes within --max-steps {cfg.max_steps}; raise --max-steps or lower --noise")
                goal = env.sample_goal(seed_rng(cfg.seed, name, tried, 0))
                look = env.random_look(seed_rng(cfg.seed, name, tried, 2)) if cfg.vary_look else None
                ep = expert_episode(env, goal, seed_rng(cfg.seed, name, tried, 1), cfg, look=look)
                tried += 1
                if not ep["success"]:
                    continue
                check_frame(ep["human"][0], f"{name} human view")
                h = w.add_clip("human", ep["human"], task_id, actions=ep["actions"], state=ep["state"])
                if "robot" in ep:
                    check_frame(ep["robot"][0], f"{name} robot view")
                    r = w.add_clip("robot", ep["robot"], task_id, actions=ep["actions"], state=ep["state"])
                    w.add_pair(h, r, split=int(kept >= cfg.episodes - cfg.val_episodes))
                clips_meta.append({"task": short_name(name), "episode": tried - 1, "goal": [float(x) for x in goal],
                                   "steps": len(ep["actions"]), "success_step": int(ep["success_step"])})
                summary["renders"] += (2 if "robot" in ep else 1) * len(ep["actions"])
                kept += 1
                if bar is not None:
                    bar.update(1)
            env.close()
            summary["tasks"][short_name(name)] = {"kept": kept, "tried": tried, "seconds": time.perf_counter() - t0}
        w.set_attr(SIM_ATTR, json.dumps({"config": cfg.to_dict(), "clips": clips_meta}))
    if bar is not None:
        bar.close()
    summary["seconds"] = time.perf_counter() - t_all
    summary["renders_per_s"] = summary["renders"] / max(summary["seconds"], 1e-9)  # incl. physics + expert
    summary["content_sha256"] = content_hash(out)
    return summary


def read_sim_meta(path: str | Path) -> dict[str, Any]:
    """The collect config and per-clip goals stored by :func:`collect` (HRAlignError if absent)."""
    from hralign.pairs import open_h5_readonly

    with open_h5_readonly(path) as h:
        raw = h.attrs.get(SIM_ATTR)
    if raw is None:
        raise HRAlignError(f"{path}: no `{SIM_ATTR}` attribute; expected a file written by `hralign sim collect`")
    return json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))


def content_hash(path: str | Path) -> str:
    """sha256 over every dataset's dtype, shape and bytes and every attribute, in name order.

    The file's own bytes may differ between identical runs (HDF5 object headers), the content does not.
    """
    from hralign.pairs import open_h5_readonly

    hsh = hashlib.sha256()

    def visit(name: str, obj: Any) -> None:
        hsh.update(name.encode())
        for k in sorted(obj.attrs):
            hsh.update(f"{k}={obj.attrs[k]!r}".encode())
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            hsh.update(f"{data.dtype}{data.shape}".encode())
            hsh.update(np.ascontiguousarray(data).tobytes() if data.dtype.kind != "O" else repr(data.tolist()).encode())

    with open_h5_readonly(path) as h:
        visit("/", h)
        names: list[str] = []
        h.visit(names.append)
        for n in sorted(names):
            visit(n, h[n])
    return hsh.hexdigest()
