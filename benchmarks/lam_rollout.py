"""Multi-step world-model rollout error versus horizon, against the copy-frame baseline.

For every pair of the chosen split, from the robot clip's first frame, four rollouts of S LAM
steps (each ``gap`` frames) are scored per step against the robot clip's real frames:

- ``transfer``: the human partner's latent actions (IDM on human frames 0, gap, 2 gap, ...);
- ``oracle``: the robot clip's own latent actions (how far the world model itself carries);
- ``random``: uniformly random codes (4 draws averaged);
- ``copy``: the first frame repeated (nothing moves).

Also times a batched rollout of all clips at once against the same rollouts one clip at a time.
Prints measured figures and writes a PNG plot; asserts nothing.

    python benchmarks/lam_rollout.py --pairs demo.h5 --lam runs/lam --out runs/wm_horizon.png [--split val]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hralign.lam.io import load_lam
from hralign.lam.model import psnr
from hralign.lam.rollout import rollout
from hralign.lam.transfer import METHODS, evaluate_transfer, max_steps
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs


def horizon_table(report: dict, key: str = "mse_per_step") -> dict[str, np.ndarray]:
    """Mean MSE per step over the report's pairs: {method: (S,)}. ``key="mse_moving_per_step"``:
    over the moving region (pairs where nothing moves are left out)."""
    rows = [r for r in report["rows"] if r[key]]
    return {m: np.mean([r[key][m] for r in rows], axis=0) for m in METHODS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--lam", required=True)
    ap.add_argument("--out", required=True, help="PNG plot of MSE vs horizon")
    ap.add_argument("--split", choices=["val", "train", "all"], default="val")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    model, pf = load_lam(args.lam), PairsFile(args.pairs)
    train_idx, val_idx = split_pairs(pf)
    idx = {"val": val_idx, "train": train_idx, "all": np.arange(pf.num_pairs)}[args.split]
    gap = model.config.gap
    t0 = time.perf_counter()
    report = evaluate_transfer(model, pf, idx, seed=args.seed)
    elapsed = time.perf_counter() - t0
    table = horizon_table(report)
    steps = len(table["copy"])
    print(f"{report['pairs']} {args.split} pairs, LAM gap {gap}, {steps} steps; scoring took {elapsed:.1f} s")
    print(f"{'step':>4} {'frames':>6} | " + " ".join(f"{m:>16}" for m in METHODS) + "   (MSE / PSNR dB vs real robot)")
    for s in range(steps):
        print(f"{s + 1:>4} {gap * (s + 1):>6} | " + " ".join(f"{table[m][s]:.5f} {psnr(table[m][s]):5.2f}" for m in METHODS))
    print("mean        | " + " ".join(f"{report['mean_mse'][m]:.5f} {psnr(report['mean_mse'][m]):5.2f}" for m in METHODS))
    below = {m: int(sum(table["transfer"][s] < table[m][s] for s in range(steps))) for m in ("copy", "random")}
    print(f"transfer below copy at {below['copy']}/{steps} horizons, below random at {below['random']}/{steps}; "
          f"per pair: below copy {report['wins']['copy']}/{report['pairs']}, below random "
          f"{report['wins']['random']}/{report['pairs']}")
    moving = horizon_table(report, "mse_moving_per_step") if report["pairs_moving"] else None
    if moving is not None:
        print(f"moving region only ({report['pairs_moving']} pairs, {report['mean_moving_fraction']:.1%} of the pixels):")
        for s in range(steps):
            print(f"{s + 1:>4} {gap * (s + 1):>6} | " + " ".join(f"{moving[m][s]:16.5f}" for m in METHODS))
        print("mean        | " + " ".join(f"{report['mean_mse_moving'][m]:16.5f}" for m in METHODS))
        print(f"moving region per pair: below copy {report['wins_moving']['copy']}/{report['pairs_moving']}, "
              f"below random {report['wins_moving']['random']}/{report['pairs_moving']}")

    # batched vs one clip at a time (same oracle-free rollouts: random codes)
    clips = [int(pf.pairs[i, 1]) for i in idx]
    n = min(max_steps(int(pf.clip_lengths("robot")[c]), gap) for c in clips)
    starts = np.stack([pf.read_clip("robot", c, [0])[0] for c in clips])
    codes = torch.randint(0, model.config.codebook_size, (len(clips), n, model.config.tokens),
                          generator=torch.Generator().manual_seed(args.seed))
    rollout(model, starts[:1], codes[:1])  # warm-up
    t0 = time.perf_counter()
    batched = rollout(model, starts, codes).frames
    tb = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = torch.cat([rollout(model, starts[i:i + 1], codes[i:i + 1]).frames for i in range(len(clips))])
    ts = time.perf_counter() - t0
    print(f"rollout of {len(clips)} clips x {n} steps: batched {tb * 1000:.1f} ms, one at a time {ts * 1000:.1f} ms "
          f"({ts / max(tb, 1e-9):.1f}x); max |difference| {float((batched - single).abs().max()):.2e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("whole frame", table)] + ([("moving region", moving)] if moving is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    x = gap * np.arange(1, steps + 1)
    for ax, (name, tab) in zip(axes[0], panels):
        for m, style in zip(METHODS, ("o-", "s--", "^-", "d:")):
            ax.plot(x, tab[m], style, label={"transfer": "transfer (human latents)", "copy": "copy first frame",
                                            "random": "random latents", "oracle": "robot's own latents"}[m])
        ax.set_xlabel("horizon (frames)")
        ax.set_ylabel(f"MSE vs real robot frame ({name})")
        ax.set_title(f"world-model rollout, {report['pairs']} {args.split} pairs, {name}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    out = {"horizon_mse": {m: [float(v) for v in table[m]] for m in METHODS}}
    if moving is not None:
        out["horizon_mse_moving"] = {m: [float(v) for v in moving[m]] for m in METHODS}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
