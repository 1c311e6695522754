"""Renders per second of MetaWorld at a small image size: gymnasium's default renderer settings
(640x480 offscreen buffer, 4x MSAA, shadows and reflections) vs hralign.sim's (buffer = image
size, no MSAA, no shadows/reflections), plus one paired expert episode (robot + human view) per task.

Both measured in this run, on this machine. Frames are checked to be non-constant.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python benchmarks/metaworld_render.py --image-size 64 --renders 200
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np


def default_settings(task: str, size: int, n: int) -> float:
    """Renders/s of a plain MetaWorld env (the env is closed and freed before hralign's is made)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array", width=size, height=size, camera_name="corner")
    env._set_task_called = True
    env._last_rand_vec = np.array((env._random_reset_space.low + env._random_reset_space.high) / 2)
    env.reset()
    env.render()  # renderer creation outside the timing
    t = time.perf_counter()
    for _ in range(n):
        img = env.render()
    rate = n / (time.perf_counter() - t)
    if int(img.max()) == int(img.min()):
        raise SystemExit("default settings: constant frame")
    env.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="push")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--renders", type=int, default=200)
    args = ap.parse_args()

    from hralign.sim.collect import CollectConfig, expert_episode
    from hralign.sim.env import SimEnv, require_metaworld, seed_rng

    require_metaworld()
    name = args.task if args.task.endswith("-v3") else args.task + "-v3"
    base = default_settings(name, args.image_size, args.renders)
    gc.collect()
    env = SimEnv(args.task, args.image_size)
    env.reset(env.sample_goal(seed_rng(0, "bench")))
    env.render()
    t = time.perf_counter()
    for _ in range(args.renders):
        img = env.render()
    fast = args.renders / (time.perf_counter() - t)
    assert img.std() > 0
    t = time.perf_counter()
    for _ in range(args.renders):
        img = env.render(human=True)
    human = args.renders / (time.perf_counter() - t)
    cfg = CollectConfig(tasks=args.task, image_size=args.image_size)
    t = time.perf_counter()
    ep = expert_episode(env, env.sample_goal(seed_rng(0, "bench", 1)), seed_rng(0, "noise"), cfg)
    dt = time.perf_counter() - t
    env.close()
    print(f"{args.task} @ {args.image_size}px, {args.renders} renders each")
    print(f"  gymnasium default renderer settings : {base:7.1f} renders/s")
    print(f"  hralign.sim robot view              : {fast:7.1f} renders/s ({fast / base:.1f}x)")
    print(f"  hralign.sim human view (re-skinned) : {human:7.1f} renders/s")
    steps = len(ep["actions"])
    print(f"  paired expert episode: {steps} steps, {2 * steps} renders in {dt:.2f}s "
          f"({2 * steps / dt:.1f} renders/s incl. physics + expert), success={ep['success']}")


if __name__ == "__main__":
    main()
