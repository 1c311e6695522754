"""Held-out action error with and without the future-feature auxiliary.

GR-1 (Wu et al., 2024) trains its policy to predict future frames beside the actions; hralign's
auxiliary predicts the frozen encoder features of frame t+DELTA (``--future-features DELTA``,
hralign/policy/future.py). This script trains the same BC policy (GR-1's continuous head) with
and without it, same seeds, same held-out robot clips, on all training robot clips and on a
fraction of them, and prints both. The baseline is measured in the same run. Usage:

  hralign pairs synth --out /tmp/fut/demo.h5 --pairs-per-task 12
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/policy_future.py --pairs /tmp/fut/demo.h5 --out /tmp/fut/runs
  # latent policy (LAPA/IGOR) instead of BC: the auxiliary trains with the tokens on human + robot clips
  hralign lam label --pairs /tmp/fut/demo.h5 --lam runs/lam --out /tmp/fut/labels.h5
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/policy_future.py --pairs /tmp/fut/demo.h5 --labels /tmp/fut/labels.h5 \
      --fractions 0.2 --out /tmp/fut/latent
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
    ap.add_argument("--loss", default="cosine", choices=["mse", "cosine"])
    ap.add_argument("--head", default="continuous")
    ap.add_argument("--instruction", action="store_true", help="also feed the instruction embedding (BC)")
    ap.add_argument("--labels", default=None, help="labels.h5 (hralign lam label): train the latent policy + action "
                    "head instead of BC; the auxiliary then trains with the tokens on human and robot clips")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--fractions", default="1.0,0.2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="evaluate run dirs already in --out (same config) "
                    "instead of training them again")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")
    from hralign.policy import (
        BCConfig,
        EncoderSource,
        LatentPolicyConfig,
        TrainConfig,
        evaluate_policy,
        train_policy,
    )

    out = Path(a.out)
    src = EncoderSource(a.encoder, image_size=a.image_size)
    fractions = [float(x) for x in a.fractions.split(",")]
    weights = [float(x) for x in a.weights.split(",")]
    conds = [(0, 0.0)] + [(a.delta, w) for w in weights]  # (delta, weight); delta 0 = the baseline, no auxiliary
    results: dict[tuple[float, int, float], list[tuple[float, float, float, float]]] = {}
    t0 = time.time()
    for frac in fractions:
        for delta, w in conds:
            for seed in range(a.seeds):
                opts = {"head": a.head, "future_features": delta, "future_weight": w if delta else 0.5,
                        "future_loss": a.loss}
                cfg = LatentPolicyConfig(**opts) if a.labels else BCConfig(instruction=a.instruction, **opts)
                run = out / f"f{frac}_d{delta}_w{w}_s{seed}"
                tcfg = TrainConfig(steps=a.steps, latent_steps=a.steps, seed=seed, robot_fraction=frac)
                if not (a.reuse and _same_run(run, cfg.to_dict(), tcfg.to_dict())):
                    train_policy(a.pairs, src, run, cfg, tcfg, labels=a.labels, overwrite=True, progress=False)
                res = evaluate_policy(run, a.pairs, progress=False)["action"]
                # the last dim is the gripper (0/1, BCE head): a few flipped frames dominate the mean MSE/L1,
                # so the arm dims are reported on their own too
                arm, grip = float(np.mean(res["l1"][:-1])), float(res["l1"][-1])
                results.setdefault((frac, delta, w), []).append((res["l1_mean"], res["mse_mean"], arm, grip))
                print(f"fraction {frac} delta {delta} weight {w} seed {seed}: held-out L1 {res['l1_mean']:.4f} "
                      f"MSE {res['mse_mean']:.5f} arm L1 {arm:.4f} gripper L1 {grip:.4f} ({res['frames']} frames, "
                      f"{res['clips']} clips) [{time.time() - t0:.0f}s]", flush=True)
    kind = "latent policy + action head" if a.labels else f"BC{' + instruction' if a.instruction else ''}"
    print(f"\n{kind} ({a.head} head), {a.steps} steps, seeds 0..{a.seeds - 1}; "
          f"future-feature auxiliary: delta {a.delta}, {a.loss} loss")
    print("| robot clips with actions | auxiliary | held-out L1 mean (per seed) | MSE mean (per seed) | arm L1 | "
          "gripper L1 |")
    print("|---|---|---|---|---|---|")
    for frac in fractions:
        off = np.array(results[(frac, 0, 0.0)])
        for delta, w in conds:
            r = np.array(results[(frac, delta, w)])
            name = f"t+{delta}, weight {w:g}" if delta else "off"
            print(f"| {frac:.0%} | {name} | {r[:, 0].mean():.4f} ({', '.join(f'{x:.4f}' for x in r[:, 0])}) | "
                  f"{r[:, 1].mean():.5f} ({', '.join(f'{x:.5f}' for x in r[:, 1])}) | "
                  f"{r[:, 2].mean():.4f} ({', '.join(f'{x:.4f}' for x in r[:, 2])}) | {r[:, 3].mean():.4f} |")
            if delta:
                print(f"|   | on - off (L1), per seed | {', '.join(f'{x:+.4f}' for x in r[:, 0] - off[:, 0])} | | "
                      f"{', '.join(f'{x:+.4f}' for x in r[:, 2] - off[:, 2])} | |")
    print(f"total {time.time() - t0:.0f}s")


def _same_run(run: Path, config: dict, train: dict) -> bool:
    """True when ``run`` holds a finished policy trained with exactly this model and train config."""
    import json

    path = run / "config.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text(encoding="utf-8"))
    return meta.get("config") == config and meta.get("train") == train


if __name__ == "__main__":
    main()
