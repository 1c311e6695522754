"""Success of MetaWorld's noisy scripted experts per task (physics only, no rendering): the probe the v2
task sets were chosen with (a corpus or pair task whose expert fails often would stall `sim collect`).

    MUJOCO_GL=egl python benchmarks/metaworld_experts.py --episodes 5 --noise 0.05 --max-steps 200
"""

from __future__ import annotations

import argparse
import json
import time

from hralign.sim.collect import CollectConfig, expert_episode
from hralign.sim.env import SimEnv, require_metaworld, seed_rng


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    cfg = CollectConfig(tasks="push", noise=args.noise, max_steps=args.max_steps)
    out = {}
    for name in sorted(n for n in ENV_POLICY_MAP if n in ALL_V3_ENVIRONMENTS):
        t0, env = time.perf_counter(), SimEnv(name, 16)
        ok, steps = 0, []
        for e in range(args.episodes):
            ep = expert_episode(env, env.sample_goal(seed_rng(args.seed, name, e, 0)), seed_rng(args.seed, name, e, 1),
                                cfg, render=False)
            ok += ep["success"]
            steps.append(len(ep["actions"]))
        env.close()
        out[name[:-3]] = {"success": ok, "episodes": args.episodes, "steps": steps, "seconds": time.perf_counter() - t0}
        print(f"{name[:-3]}: {ok}/{args.episodes} expert successes, steps {steps}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
