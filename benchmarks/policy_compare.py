"""Held-out action error of policies on the demo data. Prints measured figures.

Pipeline (all CPU, random-init r3m-resnet18 since nothing is downloaded):
  1. demo pairs (hralign.pairs.synth defaults) unless --pairs is given;
  2. ``hralign adapt`` -> HR-Align bottleneck adapter (unless --adapter is given);
  3. ``hralign lam train`` + ``hralign lam label`` -> labels.h5 (unless --labels is given);
  4. policies, every one evaluated on the same held-out robot clips:
     BC frozen vs BC adapted (all training robot clips), and on only --fraction of them:
     BC, BC + instruction, latent policy + action head.
The baseline of every comparison is measured in the same run. Usage:
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/policy_compare.py --out runs/policy_bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path


def sh(*args: str) -> None:
    print("$ hralign " + " ".join(args), flush=True)
    subprocess.run([str(Path(sys.executable).parent / "hralign"), *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/policy_bench")
    ap.add_argument("--pairs", default=None)
    ap.add_argument("--adapter", default=None, help="existing adapter dir (skip hralign adapt)")
    ap.add_argument("--labels", default=None, help="existing labels.h5 (skip the LAM)")
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--adapt-steps", type=int, default=200)
    ap.add_argument("--lam-steps", type=int, default=600)
    ap.add_argument("--lam-args", default="--idm conv --conv-channels 32 --patch-size 8 --dim 64",
                    help="extra `hralign lam train` flags (a small conv LAM: 2 shared CPU cores)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pairs = a.pairs
    if pairs is None:
        from hralign.pairs.synth import SynthConfig, synthesize

        pairs = str(synthesize(out / "pairs.h5", SynthConfig(), overwrite=True))
    adapter = a.adapter
    if adapter is None:
        sh("adapt", "--pairs", pairs, "--encoder", a.encoder, "--image-size", str(a.image_size), "--steps",
           str(a.adapt_steps), "--batch-size", "8", "--out", str(out / "adapt"), "--overwrite", "--device", "cpu")
        adapter = str(out / "adapt" / "adapter")
    labels = a.labels
    if labels is None:
        sh("lam", "train", "--pairs", pairs, "--out", str(out / "lam"), "--steps", str(a.lam_steps), "--overwrite",
           *a.lam_args.split())
        sh("lam", "label", "--pairs", pairs, "--lam", str(out / "lam"), "--out", str(out / "labels.h5"), "--overwrite")
        labels = str(out / "labels.h5")
    print(f"[setup {time.time() - t0:.0f}s]", flush=True)

    from hralign.policy import BCConfig, EncoderSource, LatentPolicyConfig, TrainConfig, evaluate_policy, train_policy

    frozen = EncoderSource(a.encoder, image_size=a.image_size)
    adapted = EncoderSource(a.encoder, adapter=adapter)
    runs = [
        ("BC frozen, 100% robot", frozen, BCConfig(head="bc"), 1.0, None),
        ("BC adapted, 100% robot", adapted, BCConfig(head="bc"), 1.0, None),
        (f"BC adapted, {a.fraction:.0%} robot", adapted, BCConfig(head="bc"), a.fraction, None),
        (f"BC(continuous) adapted, {a.fraction:.0%}", adapted, BCConfig(head="continuous"), a.fraction, None),
        (f"BC+instr(continuous) adapted, {a.fraction:.0%}", adapted,
         BCConfig(head="continuous", instruction=True), a.fraction, None),
        (f"latent+head(continuous) adapted, {a.fraction:.0%}", adapted, LatentPolicyConfig(head="continuous"),
         a.fraction, labels),
    ]
    rows = []
    for name, src, cfg, frac, lab in runs:
        l1s, mses, tok = [], [], []
        for seed in range(a.seeds):
            d = out / "policies" / f"{name.split(',')[0].replace(' ', '_').replace('(', '_').replace(')', '')}_{frac}_{seed}"
            tcfg = TrainConfig(steps=a.steps, latent_steps=a.steps, robot_fraction=frac, seed=seed)
            train_policy(pairs, src, d, cfg, tcfg, labels=lab, overwrite=True, progress=False)
            res = evaluate_policy(d, pairs)
            l1s.append(res["action"]["l1_mean"])
            mses.append(res["action"]["mse_mean"])
            if "latent" in res:
                tok.append({k: v["token_accuracy"] for k, v in res["latent"].items() if isinstance(v, dict)})
                tok[-1].update({f"{k}_majority": v["chance"] for k, v in res["latent"].items() if isinstance(v, dict)})
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        row = {"policy": name, "l1": mean(l1s), "l1_min": min(l1s), "l1_max": max(l1s), "mse": mean(mses),
               "frames": res["action"]["frames"]}
        if tok:
            row["tokens"] = {k: mean([t[k] for t in tok]) for k in tok[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nheld-out robot frames: {rows[0]['frames']}; seeds: {a.seeds}; total {time.time() - t0:.0f}s")
    print(f"{'policy':48s} {'L1 mean':>9s} {'(min..max)':>18s} {'MSE':>10s}")
    for r in rows:
        print(f"{r['policy']:48s} {r['l1']:9.5f} {r['l1_min']:8.5f}..{r['l1_max']:8.5f} {r['mse']:10.6f}")
    for r in rows:
        if "tokens" in r:
            print("latent-token accuracy on held-out clips:", json.dumps({k: round(v, 3) for k, v in r["tokens"].items()}))
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
