"""Smoke measurement of the pretraining objectives: seconds per step and frame participation ratio.

Not the benchmark (that is the MetaWorld v2 benchmark with BC on top): a check that each objective
of ``hralign pretrain --objective`` runs at the demo's size, what a step costs, and whether the
encoder it leaves spreads its per-frame features over more or fewer directions than its random
init (``frame_pr_*``: :func:`hralign.metrics.participation_ratio` of the evaluation's per-frame
features, the geometry a BC head with BatchNorm trains on). On the demo pairs file (``hralign
pairs synth --num-tasks 8 --pairs-per-task 12``: 96 pairs, 16 frames, 64 px), each objective at its
defaults and the shared demo defaults (batch 8 clips, lr 1e-3, 64 px), one seed:

    python benchmarks/pretrain_objectives.py --out /tmp/pretrain_objectives [--steps 150] [--objectives r3m,mae]

A step's time is the mean wall time between consecutive optimiser steps after the first (the
initial and final evaluations and the encoder load are left out). Rows: ``r3m``, ``r3m+vicreg``
and ``tcn-infonce`` on ``r3m-resnet18``; ``mae`` on ``timm:vit_tiny_patch16_224`` (a ViT, 16 px
patches: a 4x4 grid at 64 px) and ``tcn-infonce`` on the same ViT, so MAE has a same-encoder row.
Results go to OUT/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hralign.pairs.synth import SynthConfig, synthesize
from hralign.pretrain import PretrainConfig, pretrain

RESNET, VIT = "r3m-resnet18", "timm:vit_tiny_patch16_224"
# (row name, objective, encoder)
ROWS = (("r3m", "r3m", RESNET), ("r3m+vicreg", "r3m+vicreg", RESNET), ("tcn-infonce", "tcn-infonce", RESNET),
        ("mae (ViT)", "mae", VIT), ("tcn-infonce (ViT)", "tcn-infonce", VIT))


def run_row(pairs: Path, out: Path, objective: str, encoder: str, steps: int, image_size: int, seed: int) -> dict:
    """Pretrain one objective; (seconds per step, initial and final monitors)."""
    stamps: list[float] = []
    config = PretrainConfig(pairs=str(pairs), out=str(out), objective=objective, encoder=encoder, steps=steps,
                            image_size=image_size, seed=seed, eval_every=0, checkpoint_every=0, log_every=10,
                            overwrite=out.exists())
    result = pretrain(config, progress=False, log=lambda _s: None, on_step=lambda step, _m: stamps.append(time.perf_counter()))
    per_step = float(np.mean(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    return {"objective": objective, "encoder": encoder, "steps": steps, "seconds_per_step": per_step,
            "language": result.language, "initial": result.initial, "final": result.final}


def table(rows: dict[str, dict]) -> str:
    head = ("| row | encoder | s/step | frame PR human: init -> trained | frame PR robot: init -> trained "
            "| held-out TCN acc human: init -> trained | kNN LOO human: init -> trained |")
    lines = [head, "|" + "---|" * 7]
    for name, r in rows.items():
        i, f = r["initial"], r["final"]

        def pair(key: str) -> str:
            return f"{i.get(key, float('nan')):.2f} -> {f.get(key, float('nan')):.2f}"

        lines.append(f"| {name} | {r['encoder']} | {r['seconds_per_step']:.2f} | {pair('frame_pr_human')} | "
                     f"{pair('frame_pr_robot')} | {pair('tcn_acc_human')} | {pair('knn_all_human')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Working directory (pairs file, one run per row, results.json).")
    parser.add_argument("--steps", type=int, default=150, help="Optimiser steps per objective.")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                        help="Comma-separated rows among: " + ", ".join(r[0] for r in ROWS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = out / "demo.h5"
    if not pairs.exists():  # the demo's file: `hralign pairs synth --num-tasks 8 --pairs-per-task 12`
        synthesize(pairs, SynthConfig(num_tasks=8, pairs_per_task=12))
    wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
    unknown = sorted(set(wanted) - {r[0] for r in ROWS})
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; known: {', '.join(r[0] for r in ROWS)}")
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name, objective, encoder in ROWS:
        if name not in wanted:
            continue
        run_dir = out / name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
        results[name] = run_row(pairs, run_dir, objective, encoder, args.steps, args.image_size, args.seed)
        results_file.write_text(json.dumps(results, indent=2))
        print(f"{name}: {results[name]['seconds_per_step']:.2f} s/step", flush=True)
    print(table({k: results[k] for k in [r[0] for r in ROWS] if k in results}))


if __name__ == "__main__":
    main()
