"""Robot-view action probe and spread of encoders on a pairs file (cheap stand-in for closed-loop BC).

A rollout cell costs minutes and is noisy at a few dozen rollouts; this encodes every robot clip
once and reports, per encoder, :func:`hralign_bench.alignment.robot_spread`: the clip spread, the
robot->robot kNN task accuracy, and the action probe R^2 (:func:`hralign.metrics.action_probe_r2`:
ridge regression from frame features to the expert action, 5 folds grouped by clip;
``action_probe_r2_proprio`` is the floor without images). Used to compare pretraining
recipes and checkpoints before spending rollouts on them (docs/sim.md).

    python benchmarks/bc_probe.py --pairs eval.h5 --encoder random-init=r3m-resnet18 --encoder base=runs/x/pretrain \
        --encoder lora=runs/x/pretrain --adapter lora=runs/x/adapt/lora-middle/adapter

Prints one JSON line per encoder, with the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from hralign.pairs import PairsFile
    from hralign.policy import EncoderSource
    from hralign_bench.alignment import robot_spread

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--encoder", action="append", required=True, help="name=spec (a registry name or an encoder dir)")
    ap.add_argument("--adapter", action="append", default=[], help="name=dir: an adapter directory on that encoder")
    args = ap.parse_args()
    adapters = dict(item.partition("=")[::2] for item in args.adapter)
    size = PairsFile(args.pairs).frame_shape("robot")[0]
    for item in args.encoder:
        name, _, spec = item.partition("=")
        t = time.perf_counter()
        res = robot_spread(args.pairs, EncoderSource(spec or name, image_size=size, adapter=adapters.get(name)))
        print(json.dumps({"name": name, "encoder": spec or name, "adapter": adapters.get(name), "pairs": args.pairs, **res,
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
