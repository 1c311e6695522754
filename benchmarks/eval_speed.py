"""Closed-loop evaluation: where a worker-second goes, and old code vs new code on the same jobs.

Two modes, each run for two source trees in the same call (``--old-commit REV``: the commit to compare
against, checked out into a temporary git worktree for the run, or ``--old TREE`` for one you made;
``--new TREE``: this checkout), every tree in its own Python process (``PYTHONPATH=TREE``):

* ``--profile``: one evaluation job (one row, ``robot``, one BC seed) in one process on one thread,
  each worker-second attributed to demo feature extraction, BC fit, env creation, goal sampling, env
  reset, rendering, physics, the encoder, the policy head, result writing and the rest; per-frame costs
  and the floor that rendering + physics alone impose.
* ``--speed``: the same evaluation jobs (rows x protocols, same goals and seeds) through the benchmark's
  own job runner with ``--workers`` processes: wall seconds, rollouts/s, worker-seconds, the ratio, and
  per-rollout agreement of the outcomes.

Usage (2 cores, MUJOCO_GL=egl):
    python benchmarks/eval_speed.py --pairs eval.h5 --old-commit fcde84a --profile --speed --json out.json
The pairs file comes from ``hralign sim collect --tasks push,sweep-into --episodes 20 --image-size 96``
(the v2 evaluation file's settings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ---------------------------------------------------------------- run inside one tree (child process)

LEAVES = {  # category -> (module, attribute path) wrapped; the outermost active wrapper takes the time
    # (module, attribute) or "|"-separated alternatives: the first that exists (the code moved between commits)
    "demo features": ("hralign.sim.evaluate", "features_by_clip|encode_clips"),
    "BC fit": ("hralign.policy.demos|hralign.sim.evaluate", "run_stage"),
    "BC demo fit check": ("hralign.sim.evaluate", "demo_error|bc_demo_mse"),
    "env creation": ("hralign.sim.env", "SimEnv.__post_init__"),
    "goal sampling": ("hralign.sim.env", "SimEnv.sample_goal"),
    "env reset": ("hralign.sim.env", "SimEnv.reset"),
    "render": ("hralign.sim.env", "SimEnv.render"),
    "physics": ("hralign.sim.env", "SimEnv.step"),
    "proprio": ("hralign.sim.env", "SimEnv.proprio"),
    "encoder": ("hralign.encoders.base", "Encoder.forward"),
    "policy head": ("hralign.policy.bc", "BCPolicy.select_action"),
    "result writing": ("hralign.sim.evaluate", "write_text_atomic"),
}


def _first_present(importlib, mod_names: str, attrs: str):
    """The first (module, attribute) among the "|"-separated alternatives that exists in this tree."""
    for mod_name in mod_names.split("|"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        for attr in attrs.split("|"):
            if attr.split(".")[0] in mod.__dict__:
                return mod, attr
    raise SystemExit(f"eval_speed: none of {attrs} in {mod_names}: update LEAVES for this tree")


def _instrument() -> tuple[dict[str, float], dict[str, int]]:
    import functools
    import importlib

    spent = {k: 0.0 for k in LEAVES}
    calls = {k: 0 for k in LEAVES}
    active: list[str] = []
    for cat, (mod_names, attrs) in LEAVES.items():
        mod, attr = _first_present(importlib, mod_names, attrs)
        owner, name = (mod, attr) if "." not in attr else (getattr(mod, attr.split(".")[0]), attr.split(".")[1])
        fn = owner.__dict__[name]
        is_static = isinstance(fn, staticmethod)
        raw = fn.__func__ if is_static else fn

        def make(raw=raw, cat=cat):
            @functools.wraps(raw)
            def timed(*a, **k):
                if active:  # inside another measured category: it owns this time
                    return raw(*a, **k)
                active.append(cat)
                t0 = time.perf_counter()
                try:
                    return raw(*a, **k)
                finally:
                    spent[cat] += time.perf_counter() - t0
                    calls[cat] += 1
                    active.pop()
            return timed

        wrapped = make()
        setattr(owner, name, staticmethod(wrapped) if is_static else wrapped)
    return spent, calls


def child_profile(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)  # as a benchmark worker
    spent, calls = _instrument()
    from hralign.policy import EncoderSource
    from hralign.sim.evaluate import SimEvalConfig, evaluate_sim

    cfg = SimEvalConfig(protocol="robot", rollouts=args.rollouts, seeds=1, steps=args.steps, max_steps=args.max_steps,
                        envs=args.envs, precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = evaluate_sim(args.pairs, tmp, {"random-init": EncoderSource("r3m-resnet18", image_size=args.image_size)},
                           cfg, progress=False)
        total = time.perf_counter() - t0
    row = res["variants"]["random-init"]
    return {"total_s": total, "spent_s": spent, "calls": calls, "frames": calls["physics"],
            "rollouts": sum(len(g) for r in row["per_seed"] for g in r["per_goal"].values()),
            "per_goal": row["per_seed"][0]["per_goal"]}


def child_speed(args: argparse.Namespace) -> dict:
    from hralign.policy import EncoderSource
    from hralign_bench.v2 import run_eval_jobs

    rows = {"random-init": EncoderSource("r3m-resnet18", image_size=args.image_size), "proprio-only": None}
    base = dict(rollouts=args.rollouts, seeds=args.seeds, steps=args.steps, max_steps=args.max_steps, envs=args.envs,
                precision=args.precision)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [{"pairs": str(args.pairs), "out": f"{tmp}/{p}/{v}", "vname": v, "source": src,
                 "cfg": {**base, "protocol": p}, "human_view": False, "latent": None}
                for p in args.protocols.split(",") for v, src in rows.items()]
        t0 = time.perf_counter()
        done = run_eval_jobs(jobs, args.workers)
        wall = time.perf_counter() - t0
    cells = []
    for j, r in zip(jobs, done):
        per_seed = r["row"]["per_seed"]
        cells.append({"protocol": j["cfg"]["protocol"], "row": j["vname"],
                      "rollouts": sum(len(g) for s in per_seed for g in s["per_goal"].values()),
                      "train_s": sum(s["train_s"] for s in per_seed), "rollout_s": sum(s["rollout_s"] for s in per_seed),
                      "worker_s": r["row"].get("worker_s"), "per_goal": [s["per_goal"] for s in per_seed],
                      "rss_mb": r["rss_mb"]})
    rollouts = sum(c["rollouts"] for c in cells)
    return {"wall_s": wall, "rollouts": rollouts, "rollouts_per_s": rollouts / wall, "cells": cells}


# ---------------------------------------------------------------- driver

def run_child(tree: Path, mode: str, args: argparse.Namespace, precision: str = "fp32") -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "PYTHONWARNINGS": "ignore"}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--precision", precision] + [
        a for a in sys.argv[1:] if a not in ("--profile", "--speed")]
    if "--old-commit" in argv:  # the children need no baseline
        i = argv.index("--old-commit")
        del argv[i:i + 2]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=str(tree))
    if out.returncode != 0:
        raise SystemExit(f"{tree} {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_table(res: dict[str, dict]) -> str:
    cats = list(LEAVES) + ["other"]
    lines = ["| where the worker-second goes | " + " | ".join(f"{k}: s (share, ms/frame)" for k in res) + " |",
             "|---|" + "---|" * len(res)]
    for c in cats:
        cells = []
        for r in res.values():
            v = r["spent_s"][c] if c != "other" else r["total_s"] - sum(r["spent_s"].values())
            cells.append(f"{v:.1f} ({v / r['total_s']:.0%}, {1000 * v / r['frames']:.2f})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"{r['total_s']:.1f} s, {r['frames']} frames, {r['rollouts']} rollouts, "
                                              f"{1000 * r['total_s'] / r['frames']:.1f} ms/frame" for r in res.values())
                 + " |")
    floor = {k: 1000 * (r["spent_s"]["render"] + r["spent_s"]["physics"]) / r["frames"] for k, r in res.items()}
    lines.append("| render + physics floor | " + " | ".join(
        f"{floor[k]:.1f} ms/frame; total / floor = {1000 * r['total_s'] / r['frames'] / floor[k]:.2f}"
        for k, r in res.items()) + " |")
    return "\n".join(lines)


def agreement(a: list[dict], b: list[dict]) -> tuple[int, int]:
    same = total = 0
    for ca, cb in zip(a, b):
        for sa, sb in zip(ca["per_goal"], cb["per_goal"]):
            for t in sa:
                same += sum(x == y for x, y in zip(sa[t], sb[t]))
                total += len(sa[t])
    return same, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--old", type=Path, help="source tree of the baseline (a git worktree)")
    ap.add_argument("--old-commit", help="commit of the baseline: checked out into a temporary git worktree")
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--rollouts", type=int, default=24, help="per task and seed")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--envs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--protocols", default="robot,few-shot")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", choices=("profile", "speed"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps((child_profile if args.child == "profile" else child_speed)(args)))
        return
    if args.old_commit:
        with tempfile.TemporaryDirectory() as tmp:
            args.old = Path(tmp) / "old"
            subprocess.run(["git", "-C", str(args.new), "worktree", "add", "--detach", str(args.old), args.old_commit],
                           check=True, capture_output=True)
            try:
                compare(args)
            finally:
                subprocess.run(["git", "-C", str(args.new), "worktree", "remove", "--force", str(args.old)], check=False)
        return
    compare(args)


def compare(args: argparse.Namespace) -> None:
    trees = {"old": (args.old, "fp32"), "new": (args.new, "fp32")} if args.old else {"new": (args.new, "fp32")}
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count()}
    if args.profile:
        prof = {k: run_child(t, "profile", args, p) for k, (t, p) in trees.items()}
        out["profile"] = prof
        print(f"## Profile: one job (random-init, robot, 1 seed, {args.rollouts} goals x 2 tasks, {args.envs} envs/task, "
              f"{args.steps} BC steps, max {args.max_steps} steps), one process, one thread\n")
        print(profile_table(prof))
    if args.speed:
        speed = {k: run_child(t, "speed", args, p) for k, (t, p) in trees.items()}
        out["speed"] = speed
        print(f"\n## Speed: rows random-init + proprio-only x protocols {args.protocols}, {args.seeds} seeds x "
              f"{args.rollouts} goals x 2 tasks, {args.workers} worker processes\n")
        print("| tree | wall s | rollouts | rollouts/s | worker-s (train + rollouts) | peak worker RSS MB |")
        print("|---|---|---|---|---|---|")
        for k, r in speed.items():
            ws = sum(c["train_s"] + c["rollout_s"] for c in r["cells"])
            print(f"| {k} | {r['wall_s']:.0f} | {r['rollouts']} | {r['rollouts_per_s']:.3f} | {ws:.0f} | "
                  f"{max(c['rss_mb'] for c in r['cells']):.0f} |")
        o = speed.get("old")
        for name, n in speed.items():
            if o is None or name == "old":
                continue
            same, total = agreement(o["cells"], n["cells"])
            ws_o = sum(c["train_s"] + c["rollout_s"] for c in o["cells"])
            ws_n = sum(c["train_s"] + c["rollout_s"] for c in n["cells"])
            out.setdefault("ratio", {})[name] = {"rollouts_per_s": n["rollouts_per_s"] / o["rollouts_per_s"],
                                                 "worker_s": ws_o / ws_n, "agreement": [same, total]}
            print(f"\n{name} / old: rollouts per second {n['rollouts_per_s'] / o['rollouts_per_s']:.2f}x, worker-seconds "
                  f"{ws_o / ws_n:.2f}x fewer; per-rollout agreement {same}/{total} = {same / max(total, 1):.3f}")
            for co, cn in zip(o["cells"], n["cells"]):
                so = sum(sum(v) for s in co["per_goal"] for v in s.values()) / co["rollouts"]
                sn = sum(sum(v) for s in cn["per_goal"] for v in s.values()) / cn["rollouts"]
                print(f"  {co['protocol']:>8} {co['row']:>13}: success old {so:.3f} {name} {sn:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
