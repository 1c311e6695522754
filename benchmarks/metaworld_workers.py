"""Rollouts/s of the v2 evaluation in one process vs in worker processes (hralign_bench.v2.run_eval_jobs).

The same jobs (random-init image rows under two protocols, one BC seed each, the same goals) run
once with ``--workers 1`` (in this process: the 'before') and once with ``--workers N`` (spawned
processes, one torch thread each), each into a fresh directory; prints rollouts/s of both and the ratio.

    MUJOCO_GL=egl python benchmarks/metaworld_workers.py --pairs bench_v2/eval.h5 --rollouts 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hralign.policy import EncoderSource
from hralign_bench.v2 import run_eval_jobs
from hralign.sim.collect import read_sim_meta
from hralign.sim.evaluate import SimEvalConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True, help="eval pairs file written by `hralign sim collect` (e.g. OUT/eval.h5)")
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=4, help="(protocol, seed-offset) jobs of the random-init row")
    args = ap.parse_args()
    meta = read_sim_meta(args.pairs)
    tasks, size = meta["config"]["tasks"], int(meta["config"]["image_size"])
    src = EncoderSource("r3m-resnet18", image_size=size)
    figures = {}
    for workers in (1, args.workers):
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [{"pairs": args.pairs, "out": str(Path(tmp) / f"job{i}"), "vname": "random-init", "source": src,
                     "cfg": SimEvalConfig(protocol=("robot", "transfer")[i % 2], rollouts=args.rollouts, seeds=1,
                                          steps=300, max_steps=args.max_steps, envs=args.envs).to_dict(),
                     "human_view": False} for i in range(args.jobs)]
            t = time.perf_counter()
            run_eval_jobs(jobs, workers)
            secs = time.perf_counter() - t
        n = args.jobs * args.rollouts * len(tasks)
        figures[workers] = {"seconds": secs, "rollouts": n, "rollouts_per_s": n / secs}
        print(f"workers {workers}: {n} rollouts (incl. BC training of each job) in {secs:.1f}s = {n / secs:.3f} rollouts/s",
              flush=True)
    print(f"speed-up {figures[args.workers]['rollouts_per_s'] / figures[1]['rollouts_per_s']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
