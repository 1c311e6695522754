"""Procedurally rendered paired human/robot clips: the demo and test data of hralign.

Why a renderer and not a download: tests and the demo must run offline on 2 CPU cores, and
the analysis needs ground-truth motion. Each pair is ONE underlying tabletop episode (an
effector moves a block: push left/right/up/down, lift, rotate, ...) rendered twice, frame by
frame, in two embodiments with a real appearance gap, the way paired sets such as RH20T pair a
human demonstration with a robot one:

* human: a skin-toned hand (palm, four fingers, thumb) on a sleeved forearm entering from the
  bottom edge, over a wooden table (grain texture), camera 1;
* robot: a two-link orange arm from a fixed base above the top edge (drawn with 2-link inverse
  kinematics) ending in a two-finger grey gripper, over a brushed-metal table with a bolt grid,
  camera 2 (scaled, shifted and rotated with respect to camera 1).

Both carry pixel noise and per-clip lighting jitter. Robot clips store per-frame ``actions``
``[dx, dy, dz, gripper]`` (the effector displacement to the next frame in table units, 0 at the
last frame; gripper 1 = closed) and ``state`` ``[ex, ey, ez, gripper, ox, oy, oz, angle]``
(effector position, gripper, block position and angle in radians). World coordinates: the
table is the unit square, x to the right, y down the image, z up (towards the camera, drawn
as a larger effector/block with a shadow).

Everything is numpy; each pair draws from ``default_rng([seed, pair])``, so content does not
depend on write order and the same seed gives byte-identical frames.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hralign.config_checks import check_fraction, check_int, check_number
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.split import DEFAULT_VAL_FRACTION, make_split
from hralign.pairs.writer import PairsWriter, check_compression

# (name, instruction, kind, direction or rotation sign). ``num_tasks`` takes the first N.
SYNTH_TASKS: tuple[tuple[str, str, str, tuple[float, float]], ...] = (
    ("push_left", "push the red block to the left", "push", (-1.0, 0.0)),
    ("push_right", "push the red block to the right", "push", (1.0, 0.0)),
    ("push_up", "push the red block up", "push", (0.0, -1.0)),
    ("push_down", "push the red block down", "push", (0.0, 1.0)),
    ("lift", "lift the red block", "lift", (0.0, 0.0)),
    ("rotate_ccw", "rotate the red block counter-clockwise", "rotate", (1.0, 0.0)),
    ("push_up_right", "push the red block diagonally up and to the right", "push", (1.0, -1.0)),
    ("push_down_left", "push the red block diagonally down and to the left", "push", (-1.0, 1.0)),
    ("rotate_cw", "rotate the red block clockwise", "rotate", (-1.0, 0.0)),
    ("push_up_left", "push the red block diagonally up and to the left", "push", (-1.0, -1.0)),
    ("push_down_right", "push the red block diagonally down and to the right", "push", (1.0, 1.0)),
)
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
STATE_NAMES = ("effector_x", "effector_y", "effector_z", "gripper", "object_x", "object_y", "object_z", "object_angle")


@dataclass
class SynthConfig:
    """What :func:`synthesize` renders. The defaults fit a 2-core demo (a few seconds)."""

    num_tasks: int = field(default=8, metadata={"help": f"Number of tasks, the first N of {len(SYNTH_TASKS)} motions."})
    pairs_per_task: int = field(default=5, metadata={"help": "Paired episodes per task (one human + one robot clip each)."})
    frames: int = field(default=16, metadata={"help": "Frames per clip (both domains, frame-aligned)."})
    image_size: int = field(default=64, metadata={"help": "Side of the square human frames in pixels."})
    robot_image_size: int | None = field(default=None, metadata={"help": "Side of the robot frames (default: image_size)."})
    seed: int = field(default=0, metadata={"help": "Seed; the same seed and config give byte-identical content."})
    noise: float = field(default=0.03, metadata={"help": "Std of Gaussian pixel noise, in [0, 1] intensity units."})
    val_fraction: float = field(default=DEFAULT_VAL_FRACTION, metadata={"help": "Fraction of each task's pairs marked validation in /split "
                                                               "(stratified, at least 1 per task when a task has >= 2 pairs); "
                                                               "0 writes no /split."})
    compression: str | None = field(default=None, metadata={"help": "HDF5 filter for frames: none, gzip, lzf or blosc."})

    def __post_init__(self) -> None:
        check_int(self.num_tasks, "num_tasks", 1, len(SYNTH_TASKS))  # at most the known motions
        check_int(self.pairs_per_task, "pairs_per_task", 1)
        check_int(self.frames, "frames", 2)
        check_int(self.image_size, "image_size", 16)
        if self.robot_image_size is not None:
            check_int(self.robot_image_size, "robot_image_size", 16)
        check_int(self.seed, "seed", 0)
        check_number(self.noise, "noise", 0, 0.5)
        check_fraction(self.val_fraction)
        self.compression = check_compression(self.compression)


# --------------------------------------------------------------------------------------------
# Episodes: the shared, embodiment-free motion of one pair
# --------------------------------------------------------------------------------------------
@dataclass
class Episode:
    """Ground-truth trajectory of one pair; every array has T rows."""

    effector: np.ndarray  # (T, 3) x, y, z
    gripper: np.ndarray  # (T,) 0 open, 1 closed
    obj: np.ndarray  # (T, 3) x, y, z
    angle: np.ndarray  # (T,) radians
    obj_size: tuple[float, float]  # half extents (along its own axes)
    obj_color: np.ndarray  # (3,) in [0, 1]

    @property
    def side(self) -> float:
        """+1 when the effector starts right of the block (the arm then enters from the right), else -1."""
        return 1.0 if self.effector[0, 0] >= self.obj[0, 0] - 0.02 else -1.0

    def actions(self) -> np.ndarray:
        """(T, 4) effector displacement to the next frame (0 at the last) + gripper command."""
        d = np.zeros_like(self.effector)
        d[:-1] = self.effector[1:] - self.effector[:-1]
        return np.concatenate([d, self.gripper[:, None]], axis=1).astype(np.float32)

    def state(self) -> np.ndarray:
        """(T, 8) effector xyz, gripper, block xyz, block angle."""
        return np.concatenate([self.effector, self.gripper[:, None], self.obj, self.angle[:, None]], axis=1).astype(np.float32)


def _extent(half: tuple[float, float], angle: float, u: np.ndarray) -> float:
    """Half extent of a box rotated by ``angle`` along the unit direction ``u``."""
    c, s = math.cos(angle), math.sin(angle)
    return abs(u[0] * c + u[1] * s) * half[0] + abs(-u[0] * s + u[1] * c) * half[1]


def make_episode(task: int, frames: int, rng: np.random.Generator) -> Episode:
    """Sample one episode of task ``task`` (index into :data:`SYNTH_TASKS`)."""
    _, _, kind, (ux, uy) = SYNTH_TASKS[task]
    T = frames
    gamma = rng.uniform(0.75, 1.35)  # per-pair speed profile
    s = (np.arange(T) / (T - 1)) ** gamma
    a = rng.uniform(0.25, 0.4)  # end of the approach phase
    half = (rng.uniform(0.06, 0.08), rng.uniform(0.035, 0.05))
    color = np.clip(np.array([0.82, 0.12, 0.12]) + rng.normal(0, 0.05, 3), 0, 1)
    angle0 = rng.uniform(-0.3, 0.3)
    eff = np.zeros((T, 3))
    obj = np.zeros((T, 3))
    ang = np.full(T, angle0)
    grip = np.zeros(T)
    approach = np.clip(s / a, 0, 1)  # 0 -> 1 during the approach, then 1
    act = np.clip((s - a) / (1 - a), 0, 1)  # 0 during the approach, then 0 -> 1
    if kind == "push":
        u = np.array([ux, uy]) / math.hypot(ux, uy)
        dist = rng.uniform(0.2, 0.28)
        o0 = 0.5 - u * dist / 2 + rng.uniform(-0.08, 0.08, 2)
        contact = o0 - u * (_extent(half, angle0, u) + 0.035)
        perp = np.array([-u[1], u[0]]) * rng.uniform(-0.08, 0.08)
        start = contact - u * rng.uniform(0.12, 0.18) + perp
        e_xy = start[None] + (contact - start)[None] * approach[:, None] + u[None] * dist * act[:, None]
        o_xy = o0[None] + u[None] * dist * act[:, None]
        eff[:, :2], obj[:, :2] = e_xy, o_xy
    elif kind == "lift":
        o0 = 0.5 + rng.uniform(-0.1, 0.1, 2)
        start = o0 + rng.uniform(-0.15, 0.15, 2)
        height = rng.uniform(0.45, 0.6)
        grab = np.clip((s - a) / 0.15, 0, 1)  # gripper closes just after contact
        rise = np.clip((s - a - 0.15) / (1 - a - 0.15), 0, 1)
        eff[:, :2] = start[None] + (o0 - start)[None] * approach[:, None]
        eff[:, 2] = 0.35 * (1 - approach) + height * rise
        grip = (grab > 0.5).astype(float)
        obj[:, :2] = o0[None]
        obj[:, 2] = height * rise
    elif kind == "rotate":
        sign = ux  # +1 counter-clockwise (on screen), -1 clockwise
        o0 = 0.5 + rng.uniform(-0.08, 0.08, 2)
        r = half[0] + 0.03
        phi0 = angle0 + (math.pi if rng.random() < 0.5 else 0.0)  # push one end of the block
        sweep = rng.uniform(0.45, 0.6) * math.pi
        contact = o0 + r * np.array([math.cos(phi0), math.sin(phi0)])
        tangent = -sign * np.array([-math.sin(phi0), math.cos(phi0)])  # screen y points down
        start = contact - tangent * rng.uniform(0.1, 0.15)
        phi = phi0 - sign * sweep * act
        on_arc = o0[None] + r * np.stack([np.cos(phi), np.sin(phi)], axis=1)
        e_xy = np.where((s < a)[:, None], start[None] + (contact - start)[None] * approach[:, None], on_arc)
        eff[:, :2] = e_xy
        obj[:, :2] = o0[None]
        ang = angle0 - sign * sweep * act
    else:  # pragma: no cover - SYNTH_TASKS is fixed
        raise HRAlignError(f"unknown synthetic task kind {kind!r}")
    return Episode(eff, grip, obj, ang, half, color)


# --------------------------------------------------------------------------------------------
# Rendering (signed distances on a pixel grid in world coordinates, anti-aliased edges)
# --------------------------------------------------------------------------------------------
class _Canvas:
    """A float image whose pixels know their world coordinates under one camera."""

    def __init__(self, size: int, scale: float, offset: np.ndarray, rot: float) -> None:
        self.size = size
        c = (np.arange(size) + 0.5) / size - 0.5
        px, py = np.meshgrid(c, c)  # image coords centred, y down
        # image = R(rot) * scale * (world - 0.5) + offset  ->  world = R(-rot) (image - offset) / scale + 0.5
        qx, qy = px - offset[0], py - offset[1]
        cr, sr = math.cos(-rot), math.sin(-rot)
        self.x = (cr * qx - sr * qy) / scale + 0.5
        self.y = (sr * qx + cr * qy) / scale + 0.5
        self.aa = 1.0 / (size * scale)  # one pixel in world units
        self.img = np.zeros((size, size, 3))

    def paint(self, sd: np.ndarray, color, alpha: float = 1.0) -> None:
        """Blend ``color`` where the signed distance ``sd`` (world units) is negative."""
        a = np.clip(0.5 - sd / self.aa, 0.0, 1.0)[..., None] * alpha
        self.img = self.img * (1 - a) + np.asarray(color, dtype=float) * a


def _sd_circle(cv: _Canvas, c, r: float) -> np.ndarray:
    return np.hypot(cv.x - c[0], cv.y - c[1]) - r


def _sd_capsule(cv: _Canvas, p, q, r: float) -> np.ndarray:
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    L2 = max(float(d @ d), 1e-12)
    h = np.clip(((cv.x - p[0]) * d[0] + (cv.y - p[1]) * d[1]) / L2, 0.0, 1.0)
    return np.hypot(cv.x - p[0] - h * d[0], cv.y - p[1] - h * d[1]) - r


def _sd_box(cv: _Canvas, c, half, angle: float) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    dx, dy = cv.x - c[0], cv.y - c[1]
    lx, ly = ca * dx + sa * dy, -sa * dx + ca * dy
    qx, qy = np.abs(lx) - half[0], np.abs(ly) - half[1]
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _sd_ellipse(cv: _Canvas, c, rx: float, ry: float, angle: float) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    dx, dy = cv.x - c[0], cv.y - c[1]
    lx, ly = ca * dx + sa * dy, -sa * dx + ca * dy
    k = np.hypot(lx / rx, ly / ry)
    return (k - 1.0) * min(rx, ry)


@dataclass
class _Style:
    """Per-clip appearance: camera, colours, texture phases, lighting."""

    scale: float
    offset: np.ndarray
    rot: float
    table: np.ndarray
    accent: np.ndarray  # skin (human) / link colour (robot)
    second: np.ndarray  # sleeve (human) / gripper colour (robot)
    phase: np.ndarray
    light: float


def _human_style(rng: np.random.Generator) -> _Style:
    skins = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.52], [0.72, 0.52, 0.38], [0.55, 0.38, 0.26]])
    sleeves = np.array([[0.15, 0.25, 0.55], [0.2, 0.45, 0.25], [0.85, 0.85, 0.8], [0.1, 0.1, 0.12]])
    return _Style(scale=1.0 + rng.uniform(-0.03, 0.03), offset=rng.uniform(-0.02, 0.02, 2), rot=rng.uniform(-0.03, 0.03),
                  table=np.array([0.58, 0.40, 0.22]) + rng.normal(0, 0.03, 3),
                  accent=skins[rng.integers(len(skins))] + rng.normal(0, 0.02, 3),
                  second=sleeves[rng.integers(len(sleeves))], phase=rng.uniform(0, 2 * math.pi, 3),
                  light=rng.uniform(0.92, 1.08))


def _robot_style(rng: np.random.Generator) -> _Style:
    return _Style(scale=0.8 + rng.uniform(-0.03, 0.03), offset=np.array([0.06, 0.05]) + rng.uniform(-0.02, 0.02, 2),
                  rot=0.14 + rng.uniform(-0.03, 0.03),
                  table=np.array([0.60, 0.63, 0.66]) + rng.normal(0, 0.02, 3),
                  accent=np.array([0.95, 0.55, 0.1]) + rng.normal(0, 0.03, 3),
                  second=np.array([0.3, 0.3, 0.32]) + rng.normal(0, 0.02, 3), phase=rng.uniform(0, 2 * math.pi, 3),
                  light=rng.uniform(0.92, 1.08))


def _draw_table_human(cv: _Canvas, st: _Style) -> None:
    # Wooden grain: wavy stripes along x plus plank seams.
    grain = np.sin(38 * cv.y + 2.5 * np.sin(6 * cv.x + st.phase[0]) + st.phase[1])
    seams = (np.abs(((cv.y + st.phase[2] / 10) * 4) % 1.0 - 0.5) > 0.47).astype(float)
    cv.img = st.table[None, None] * (1 + 0.12 * grain[..., None]) * (1 - 0.35 * seams[..., None])


def _draw_table_robot(cv: _Canvas, st: _Style, rng: np.random.Generator) -> None:
    # Brushed metal: fine horizontal streaks, plus a bolt grid.
    streak = np.sin(260 * cv.y + st.phase[0]) * 0.03 + np.sin(97 * cv.y + st.phase[1]) * 0.03
    cv.img = st.table[None, None] * (1 + streak[..., None])
    for gx in np.arange(-0.25, 1.3, 0.25):
        for gy in np.arange(-0.25, 1.3, 0.25):
            cv.paint(_sd_circle(cv, (gx, gy), 0.012), (0.35, 0.36, 0.38))


def _draw_object(cv: _Canvas, ep: Episode, t: int) -> None:
    ox, oy, oz = ep.obj[t]
    k = 1.0 + 0.6 * oz
    if oz > 1e-3:  # shadow on the table under a lifted block
        cv.paint(_sd_box(cv, (ox, oy), ep.obj_size, ep.angle[t]), (0, 0, 0), alpha=0.35)
    c = (ox, oy - 0.25 * oz)  # a lifted block also moves towards the top of the image
    half = (ep.obj_size[0] * k, ep.obj_size[1] * k)
    cv.paint(_sd_box(cv, c, half, ep.angle[t]), ep.obj_color * 0.6)
    cv.paint(_sd_box(cv, c, (half[0] - 0.012, half[1] - 0.012), ep.angle[t]), ep.obj_color)


def _draw_hand(cv: _Canvas, st: _Style, ep: Episode, t: int) -> None:
    ex, ey, ez = ep.effector[t]
    k = 1.0 + 0.6 * ez
    p = np.array([ex, ey - 0.25 * ez])
    elbow = np.array([ex + 0.9 * ep.side, 1.45])  # the forearm enters from the bottom, away from the block
    u = p - elbow
    u /= np.linalg.norm(u)
    n = np.array([-u[1], u[0]])
    wrist = p - u * 0.07 * k
    cv.paint(_sd_capsule(cv, elbow, wrist, 0.055 * k), st.second * st.light)  # sleeve
    cv.paint(_sd_capsule(cv, wrist - u * 0.06 * k, wrist, 0.04 * k), st.accent * 0.95)  # wrist skin
    skin = st.accent
    cv.paint(_sd_ellipse(cv, p, 0.055 * k, 0.065 * k, math.atan2(u[1], u[0]) + math.pi / 2), skin)
    closed = ep.gripper[t] > 0.5
    flen = (0.035 if closed else 0.075) * k
    for i, off in enumerate((-0.036, -0.012, 0.012, 0.036)):
        base = p + u * 0.045 * k + n * off * k
        tip = base + u * flen * (0.85 if i in (0, 3) else 1.0)
        cv.paint(_sd_capsule(cv, base, tip, 0.011 * k), skin * 0.93)
    thumb_base = p + n * 0.045 * k
    thumb_tip = thumb_base + (n * 0.7 + u * 0.7) * (0.03 if closed else 0.055) * k
    cv.paint(_sd_capsule(cv, thumb_base, thumb_tip, 0.012 * k), skin * 0.9)


def _ik(base: np.ndarray, target: np.ndarray, l1: float, l2: float, side: float) -> np.ndarray:
    """Elbow position of a planar 2-link arm reaching ``target`` (elbow bent towards ``side`` in x)."""
    d = target - base
    r = float(np.clip(np.linalg.norm(d), abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6))
    a = (l1 ** 2 - l2 ** 2 + r ** 2) / (2 * r)
    h = math.sqrt(max(l1 ** 2 - a ** 2, 0.0))
    u = d / max(np.linalg.norm(d), 1e-9)
    n = np.array([u[1], -u[0]])
    if n[0] * side < 0:
        n = -n
    return base + u * a + n * h


def _draw_robot(cv: _Canvas, st: _Style, ep: Episode, t: int) -> None:
    ex, ey, ez = ep.effector[t]
    k = 1.0 + 0.6 * ez
    p = np.array([ex, ey - 0.25 * ez])
    base = np.array([0.5 + 0.7 * ep.side, -0.25])  # fixed base above the top edge, away from the block
    l1, l2 = 0.8, 0.75
    wrist_target = p - np.array([0.0, 0.06]) * k  # fingertips reach just past the effector point
    elbow = _ik(base, wrist_target, l1, l2, ep.side)
    dark = np.array([0.12, 0.12, 0.13])
    cv.paint(_sd_capsule(cv, base, elbow, 0.05), st.accent * st.light)
    cv.paint(_sd_capsule(cv, elbow, wrist_target, 0.04 * k), st.accent * 0.85 * st.light)
    cv.paint(_sd_circle(cv, elbow, 0.05), dark)
    cv.paint(_sd_circle(cv, wrist_target, 0.032 * k), dark)
    u = p - wrist_target
    u /= max(np.linalg.norm(u), 1e-9)
    n = np.array([-u[1], u[0]])
    palm_c = wrist_target + u * 0.035 * k
    cv.paint(_sd_capsule(cv, palm_c - n * 0.05 * k, palm_c + n * 0.05 * k, 0.014 * k), st.second)
    w = (0.015 if ep.gripper[t] > 0.5 else 0.042) * k
    for sgn in (-1, 1):
        b = palm_c + n * sgn * w
        cv.paint(_sd_capsule(cv, b, b + u * 0.06 * k, 0.011 * k), st.second * 1.3)


def render_clip(ep: Episode, domain: str, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Render ``ep`` in ``domain`` ("human" or "robot") as uint8 (T, size, size, 3)."""
    st = _human_style(rng) if domain == "human" else _robot_style(rng)
    T = ep.effector.shape[0]
    out = np.empty((T, size, size, 3), dtype=np.uint8)
    table_cv = _Canvas(size, st.scale, st.offset, st.rot)
    if domain == "human":
        _draw_table_human(table_cv, st)
    else:
        _draw_table_robot(table_cv, st, rng)
    table = table_cv.img
    for t in range(T):
        cv = _Canvas(size, st.scale, st.offset, st.rot)
        cv.img = table.copy()
        _draw_object(cv, ep, t)
        (_draw_hand if domain == "human" else _draw_robot)(cv, st, ep, t)
        img = cv.img * st.light + rng.normal(0.0, noise, cv.img.shape) if noise > 0 else cv.img * st.light
        out[t] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------
def synthesize(path: str | os.PathLike, config: SynthConfig | None = None, overwrite: bool = False,
               progress: bool = False) -> Path:
    """Render a paired set to ``path`` (streamed clip by clip, atomic) and return the path.

    Pair ``i`` of task ``k`` (pairs are task-major: ``i = k * pairs_per_task + j``) holds human
    clip ``i`` and robot clip ``i``, which show the same episode frame by frame.
    """
    cfg = config or SynthConfig()
    if not isinstance(cfg, SynthConfig):
        raise HRAlignError(f"`config` should be a SynthConfig but the value passed is {type(cfg).__name__}")
    robot_size = cfg.robot_image_size or cfg.image_size
    n_pairs = cfg.num_tasks * cfg.pairs_per_task
    pair_tasks = np.repeat(np.arange(cfg.num_tasks), cfg.pairs_per_task)
    split = make_split(pair_tasks, cfg.val_fraction, by="pair", seed=cfg.seed)
    iterator = range(n_pairs)
    if progress:
        from tqdm.auto import tqdm  # only the CLI asks for a bar

        iterator = tqdm(iterator, desc="synth", unit="pair", disable=None)  # off when stderr is not a TTY
    with PairsWriter(path, tasks=[t[1] for t in SYNTH_TASKS[:cfg.num_tasks]], compression=cfg.compression,
                     overwrite=overwrite) as w:
        w.set_attr("synth_config", json.dumps(asdict(cfg)))
        for i in iterator:
            k = int(pair_tasks[i])
            ep = make_episode(k, cfg.frames, np.random.default_rng([cfg.seed, i, 0]))
            h = w.add_clip("human", render_clip(ep, "human", cfg.image_size, cfg.noise,
                                                np.random.default_rng([cfg.seed, i, 1])), k)
            r = w.add_clip("robot", render_clip(ep, "robot", robot_size, cfg.noise,
                                                np.random.default_rng([cfg.seed, i, 2])), k,
                           actions=ep.actions(), state=ep.state())
            w.add_pair(h, r, split=int(split[i]) if cfg.val_fraction > 0 else None)
    return Path(path)
