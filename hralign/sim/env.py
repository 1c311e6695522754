"""MetaWorld environments for paired rendering and closed-loop evaluation (the ``[sim]`` extra).

MetaWorld and mujoco are imported lazily (inside :func:`require_metaworld`) because they are an
optional extra and cost a second to import; nothing else in hralign needs them.

Facts this module encodes (measured on metaworld 3.1.1 / mujoco 3.3, software EGL):

* ``env.reset(seed=...)`` does not fix the goal; the goal ("rand_vec") is set explicitly through
  ``env.set_task`` with a vector drawn from a seeded generator, so every variant sees the same goals.
* One env per task, reset between episodes: a second rendering env created while the first is still
  referenced renders black frames. :func:`check_frame` refuses constant frames.
* The ``corner*`` cameras render upside down; frames are flipped to look the right way up.
* A small offscreen buffer, no MSAA, no shadows or reflections: ~100 renders/s at 64 px instead of ~10.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from hralign.errors import HRAlignError

INSTALL_HINT = "pip install 'hralign[sim]' (mujoco>=3.1, metaworld>=3.0, gymnasium>=1.0)"

# Language instructions per task (MetaWorld has none; R3M/HR-Align condition on one per task).
INSTRUCTIONS = {
    "reach": "reach the red goal position",
    "push": "push the puck to the goal",
    "pick-place": "pick up the puck and place it at the goal",
    "drawer-open": "open the drawer",
    "drawer-close": "close the drawer",
    "button-press": "press the button",
    "button-press-topdown": "press the button from the top",
    "door-open": "open the door",
    "peg-insert-side": "insert the peg into the hole from the side",
    "window-open": "slide the window open",
}

# The human look: skin-toned arm, gripper hidden, another table colour (RGBA in [0, 1]).
SKIN_RGBA = (0.87, 0.66, 0.53, 1.0)
TABLE_RGBA = (0.32, 0.45, 0.62, 1.0)
GRIPPER_BODIES = ("hand", "rightclaw", "rightpad", "leftclaw", "leftpad")
ARM_ROOT = "right_arm_base_link"
FOREARM_ROOT = "right_l5"  # links from here on are bare skin; the upper arm wears a sleeve in varied looks
# Ranges of the per-episode appearance of the human-video corpus (``random_look``).
SKIN_TONES = ((0.98, 0.84, 0.72), (0.87, 0.66, 0.53), (0.72, 0.52, 0.38), (0.55, 0.37, 0.25), (0.36, 0.23, 0.15))
LIGHT_RANGE = (0.15, 0.55)  # diffuse intensity of each light (MetaWorld's own: 0.3)
CAMERA_JITTER = 0.02  # std of the camera position offset per axis, metres (the camera is ~1.2 m away)
PROPRIO_DIM = 4  # hand xyz + gripper opening: what a robot knows about itself (no object, no goal)


def require_metaworld() -> Any:
    """Import metaworld (EGL rendering unless MUJOCO_GL is set) or raise a one-line HRAlignError."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import metaworld
        import metaworld.policies
        import mujoco  # noqa: F401
    except Exception as e:  # ImportError, or a GL backend that fails to load
        raise HRAlignError(f"MetaWorld is not usable here ({type(e).__name__}: {e}); install it with {INSTALL_HINT}") from e
    return metaworld


def metaworld_available() -> tuple[bool, str]:
    """(True, "") when metaworld imports, else (False, reason): for skips and `--help` notes."""
    try:
        require_metaworld()
    except HRAlignError as e:
        return False, str(e)
    return True, ""


def env_name(task: str) -> str:
    """``push`` -> ``push-v3`` (a full ``*-v3`` name passes through); unknown names list the known ones."""
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    name = task if task.endswith("-v3") else f"{task}-v3"
    if name not in ALL_V3_ENVIRONMENTS or name not in ENV_POLICY_MAP:
        known = ", ".join(sorted(n[:-3] for n in ENV_POLICY_MAP if n in ALL_V3_ENVIRONMENTS))
        raise HRAlignError(f"--tasks: unknown MetaWorld task {task!r}; "
                           f"known: {known}")
    return name


def short_name(task: str) -> str:
    return task.removesuffix("-v3")


def instruction(task: str) -> str:
    t = short_name(task)
    return INSTRUCTIONS.get(t, t.replace("-", " "))


def seed_rng(*parts: int | str) -> np.random.Generator:
    """A numpy generator from a tuple of ints/strings (strings hashed stably, not with ``hash``)."""
    words = []
    for p in parts:
        if isinstance(p, str):
            words.append(int.from_bytes(p.encode("utf-8")[:8].ljust(8, b"\0"), "little") % (2**63))
        else:
            words.append(int(p))
    return np.random.default_rng(words)


@dataclass
class SimEnv:
    """One MetaWorld env for one task, rendering at ``image_size`` from ``camera``; reused across episodes."""

    task: str
    image_size: int = 64
    camera: str = "corner"

    def __post_init__(self) -> None:
        require_metaworld()
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS
        from metaworld.policies import ENV_POLICY_MAP

        self.name = env_name(self.task)
        cls = ALL_V3_ENVIRONMENTS[self.name]
        self.env = cls(render_mode="rgb_array", width=self.image_size, height=self.image_size, camera_name=self.camera)
        m = self.env.model
        cams = [m.camera(i).name for i in range(m.ncam)]
        if self.camera not in cams:
            raise HRAlignError(f"--camera {self.camera!r}: not a camera of {self.name}; known: {', '.join(cams)}")
        self.cameras = cams
        # Small offscreen buffer and no MSAA: set before the renderer exists (it is made on first render).
        m.vis.global_.offwidth = max(self.image_size, 1)
        m.vis.global_.offheight = max(self.image_size, 1)
        m.vis.quality.offsamples = 0
        self._kwargs = dict(ML1_ARGS_KWARGS[self.name]["kwargs"])
        self._kwargs.pop("task_id", None)
        self.expert = ENV_POLICY_MAP[self.name]()
        self._mujoco = mujoco
        self._viewer_ready = False
        self._human_look = self._look_tables()

    # -- goals ---------------------------------------------------------------------------------
    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal (rand_vec) drawn as MetaWorld draws it, from a generator seeded by ``rng``.

        Tasks reject some draws in ``reset_model`` (push: goal too near the puck) and redraw until
        one is accepted; with a frozen rand_vec that loop would never end, so the draw runs with
        MetaWorld's own seeded sampling and the accepted vector is returned.
        """
        import metaworld
        from gymnasium.utils import seeding

        e = self.env
        data = dict(self._kwargs, rand_vec=np.zeros_like(e._random_reset_space.low), env_cls=type(e),
                    partially_observable=False)
        e.set_task(metaworld._encode_task(self.name, data))
        e._freeze_rand_vec = False
        e.seeded_rand_vec = True
        e.np_random, _ = seeding.np_random(int(rng.integers(0, 2**31 - 1)))
        try:
            e.reset()
            goal = np.array(e._last_rand_vec, dtype=np.float64, copy=True)
        finally:
            e.seeded_rand_vec = False
            e._freeze_rand_vec = True
        return goal

    def reset(self, goal: np.ndarray) -> np.ndarray:
        """Reset to the object/goal placement ``goal`` (MetaWorld's rand_vec); returns the full observation."""
        import metaworld

        data = dict(self._kwargs, rand_vec=np.asarray(goal, np.float64), env_cls=type(self.env),
                    partially_observable=False)  # the expert reads the goal from the observation
        self.env.set_task(metaworld._encode_task(self.name, data))
        obs, _ = self.env.reset()
        return obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        obs, _r, _term, _trunc, info = self.env.step(np.clip(np.asarray(action, np.float32), -1.0, 1.0))
        return obs, bool(info.get("success", 0.0))

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.expert.get_action(obs), np.float32)

    @staticmethod
    def proprio(obs: np.ndarray) -> np.ndarray:
        """Hand xyz + gripper opening (float32 [4]); object and goal are left to vision."""
        return np.asarray(obs[:PROPRIO_DIM], np.float32)

    # -- rendering -----------------------------------------------------------------------------
    def _prepare_viewer(self) -> None:
        if self._viewer_ready:
            # Each env owns a GL context and gymnasium makes it current only when one renderer holds
            # several viewers: after another task's env rendered, this one would draw into the wrong
            # context (measured: a different frame of the same state). Make ours current every time.
            self._viewer.make_context_current()
            return
        self._viewer = viewer = self.env.mujoco_renderer._get_viewer("rgb_array")
        flags = self._mujoco.mjtRndFlag
        viewer.scn.flags[flags.mjRND_SHADOW] = 0
        viewer.scn.flags[flags.mjRND_REFLECTION] = 0
        self._viewer_ready = True

    def render(self, human: bool = False, camera: str | None = None,
               look: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """uint8 [S, S, 3] of the current state; ``human`` re-skins the arm for this one render
        (``look``: a look from :meth:`random_look` instead of the fixed human look)."""
        self._prepare_viewer()
        cam = camera or self.camera
        if cam not in self.cameras:
            raise HRAlignError(f"camera {cam!r}: not a camera of {self.name}; known: {', '.join(self.cameras)}")
        renderer = self.env.mujoco_renderer
        old_cam = renderer.camera_id
        renderer.camera_id = self.env.model.camera(cam).id
        saved = self._apply_look(look if look is not None else self._human_look) if human else None
        try:
            img = np.asarray(self.env.render())
        finally:
            renderer.camera_id = old_cam
            if saved is not None:
                self._apply_look(saved)
        if cam.startswith("corner"):
            img = img[::-1]  # these cameras render upside down
        return np.ascontiguousarray(img, dtype=np.uint8)

    def _look_tables(self, skin: tuple[float, ...] = SKIN_RGBA, sleeve: tuple[float, ...] | None = None,
                     table: tuple[float, ...] | None = TABLE_RGBA, light: float | None = None,
                     camera_offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Model arrays of a human look (visual only: physics never reads them).

        ``sleeve`` colours the upper arm (None: skin all the way); ``table`` None keeps the wood
        texture (tinted by ``table_tint`` in ``random_look``); ``light`` sets each light's diffuse
        intensity; ``camera_offset`` moves every camera by that many metres.
        """
        m = self.env.model
        rgba = np.array(m.geom_rgba, copy=True)
        matid = np.array(m.geom_matid, copy=True)
        root, forearm = m.body(ARM_ROOT).id, m.body(FOREARM_ROOT).id
        gripper = {m.body(b).id for b in GRIPPER_BODIES}
        table_body = m.body("tablelink").id

        def under(b: int, anc: int) -> bool:
            while b > 0:
                if b == anc:
                    return True
                b = int(m.body_parentid[b])
            return False

        for g in range(m.ngeom):
            b = int(m.geom_bodyid[g])
            if b in gripper:
                rgba[g, 3] = 0.0  # gripper hidden
            elif under(b, root):
                bare = sleeve is None or under(b, forearm)
                rgba[g] = (*(skin if bare else sleeve)[:3], 1.0)
                matid[g] = -1  # the material would override the colour
            elif b == table_body and table is not None:
                rgba[g] = (*table[:3], 1.0)
                matid[g] = -1
        look = {"geom_rgba": rgba, "geom_matid": matid, "mat_rgba": np.array(m.mat_rgba, copy=True),
                "light_diffuse": np.array(m.light_diffuse, copy=True)}
        if light is not None:
            look["light_diffuse"][:] = float(light)
        if camera_offset is not None:  # rendering reads the cameras' world positions from data, not the model
            look["cam_xpos"] = np.asarray(camera_offset, np.float64)[None, :]
        return look

    def random_look(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A human look drawn per episode for the corpus: skin tone, sleeve colour, table colour or a
        tinted wood texture, light intensity and a small camera offset (R3M's Ego4D varies all of these)."""
        tone = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) * rng.uniform(0.9, 1.1)
        sleeve = None if rng.random() < 0.25 else tuple(rng.uniform(0.05, 0.95, 3))
        textured = rng.random() < 0.5
        look = self._look_tables(skin=tuple(np.clip(tone, 0, 1)), sleeve=sleeve,
                                 table=None if textured else tuple(rng.uniform(0.1, 0.9, 3)),
                                 light=rng.uniform(*LIGHT_RANGE), camera_offset=rng.normal(0, CAMERA_JITTER, 3))
        if textured:  # tint the table's wood material
            mat = self.env.model.material("table_wood").id
            look["mat_rgba"][mat, :3] = rng.uniform(0.4, 1.0, 3)
        return look

    def _apply_look(self, look: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set the look's arrays, return the old ones (so the same call restores them).

        ``cam_xpos`` is an offset added to the cameras' world positions in ``data`` (the renderer reads
        those; a model ``cam_pos`` change would wait for the next kinematics pass); its saved value is
        the negated offset.
        """
        m, d = self.env.model, self.env.data
        saved = {k: np.array(getattr(m, k), copy=True) for k in look if k != "cam_xpos"}
        for k, v in look.items():
            if k != "cam_xpos":
                getattr(m, k)[:] = v
        if "cam_xpos" in look:
            d.cam_xpos[:] += look["cam_xpos"]
            saved["cam_xpos"] = -np.asarray(look["cam_xpos"])
        return saved

    def close(self) -> None:
        self.env.close()


def check_frame(img: np.ndarray, where: str) -> None:
    """Refuse a constant frame (the black-frame failure of a second rendering env)."""
    if img.size and int(img.max()) == int(img.min()):
        raise HRAlignError(f"{where}: rendered a constant frame (value {int(img.max())}); keep one env per task and "
                           "check MUJOCO_GL (egl or osmesa)")
