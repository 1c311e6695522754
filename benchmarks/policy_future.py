"""Held-out action error with and without the future-feature auxiliary (issue 9, "Must show" 3).

GR-1 (Wu et al., 2024) trains its policy to predict future frames beside the actions; hralign's
auxiliary predicts the frozen encoder features of frame t+DELTA (``--future-features DELTA``,
hralign/policy/future.py). This script trains the same BC policy (GR-1's continuous head) with
and without it, same seeds, same held-out robot clips, on all training robot clips and on a
fraction of them, and prints both. The baseline is measured in the same run. Usage:

  hralign pairs synth --out /tmp/fut/demo.h5 --pairs-per-task 12
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/policy_future.py --pairs /tmp/fut/demo.h5 --out /tmp/fut/runs
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True, help="pairs file (e.g. hralign pairs synth --pairs-per-task 12)")
    ap.add_argument("--out", default="runs/policy_future")
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--delta", type=int, default=3, help="frames ahead whose features are predicted")
    ap.add_argument("--weights", default="0.5", help="comma-separated future-loss weights, each one run")
    ap.add_argument("--loss", default="mse", choices=["mse", "cosine"])
    ap.add_argument("--head", default="continuous")
    ap.add_argument("--instruction", action="store_true", help="also feed the instruction embedding")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--fractions", default="1.0,0.2")
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")
    from hralign.policy import BCConfig, EncoderSource, TrainConfig, evaluate_policy, train_policy

    out = Path(a.out)
    src = EncoderSource(a.encoder, image_size=a.image_size)
    fractions = [float(x) for x in a.fractions.split(",")]
    weights = [float(x) for x in a.weights.split(",")]
    conds = [(0, 0.0)] + [(a.delta, w) for w in weights]  # (delta, weight); delta 0 = the baseline, no auxiliary
    results: dict[tuple[float, int, float], list[tuple[float, float]]] = {}
    t0 = time.time()
    for frac in fractions:
        for delta, w in conds:
            for seed in range(a.seeds):
                cfg = BCConfig(head=a.head, instruction=a.instruction, future_features=delta,
                               future_weight=w if delta else 0.5, future_loss=a.loss)
                run = out / f"f{frac}_d{delta}_w{w}_s{seed}"
                train_policy(a.pairs, src, run, cfg, TrainConfig(steps=a.steps, seed=seed, robot_fraction=frac),
                             overwrite=True, progress=False)
                res = evaluate_policy(run, a.pairs, progress=False)["action"]
                results.setdefault((frac, delta, w), []).append((res["l1_mean"], res["mse_mean"]))
                print(f"fraction {frac} delta {delta} weight {w} seed {seed}: held-out L1 {res['l1_mean']:.4f} "
                      f"MSE {res['mse_mean']:.5f} ({res['frames']} frames, {res['clips']} clips) "
                      f"[{time.time() - t0:.0f}s]", flush=True)
    print(f"\nBC ({a.head} head{', + instruction' if a.instruction else ''}), {a.steps} steps, seeds 0..{a.seeds - 1}; "
          f"future-feature auxiliary: delta {a.delta}, {a.loss} loss")
    print("| robot clips with actions | auxiliary | held-out L1 mean (per seed) | MSE mean (per seed) |")
    print("|---|---|---|---|")
    for frac in fractions:
        off = np.array(results[(frac, 0, 0.0)])
        for delta, w in conds:
            r = np.array(results[(frac, delta, w)])
            name = f"t+{delta}, weight {w:g}" if delta else "off"
            print(f"| {frac:.0%} | {name} | {r[:, 0].mean():.4f} ({', '.join(f'{x:.4f}' for x in r[:, 0])}) | "
                  f"{r[:, 1].mean():.5f} ({', '.join(f'{x:.5f}' for x in r[:, 1])}) |")
            if delta:
                print(f"|   | on - off (L1), per seed | {', '.join(f'{x:+.4f}' for x in r[:, 0] - off[:, 0])} | |")
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
