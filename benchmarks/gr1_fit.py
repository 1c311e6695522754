"""Fit curves of GR-1 and BC on the same robot demos: training and held-out action MSE against steps.

Why this exists: in closed loop GR-1 lost to R3M's MLP BC while fitting its own demos ~50x worse
(demo MSE 0.03, the proprio-only level, vs BC's 0.0006), so the comparison measured how fast each
policy fits. This trains both exactly as ``hralign sim eval --protocol robot`` does
(:func:`hralign.sim.evaluate.train_sim_bc`, :func:`hralign.sim.gr1.train_sim_gr1`: same cached
frozen features, same loop, BC 256 frames per step, GR-1 256 // history windows) on the robot
clips of a pairs file minus a seeded held-out share of every task's episodes
(:func:`hralign.sim.evaluate.heldout_split`), and every ``--eval-every`` steps records the action
MSE in action units, eval mode, on the training frames (``bc_demo_mse`` / ``gr1_demo_mse``) and on
the held-out frames. GR-1 variants override :class:`GR1Config` / :class:`GR1TrainConfig` fields one
factor at a time (``--variant name:field=value,field=value``).

    OMP_NUM_THREADS=1 python benchmarks/gr1_fit.py --pairs eval.h5 --steps 1000 --eval-every 100 \
        --variant old:normalize_inputs=false --variant new: --out runs/gr1_fit/a.json
    python benchmarks/gr1_fit.py --report runs/gr1_fit/a.json runs/gr1_fit/b.json   # one table of several runs

Writes JSON (args, split, per run: the curve, wall seconds) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``name:field=value,...`` -> (name, overrides) typed by the GR1Config / GR1TrainConfig field defaults."""
    from hralign.errors import HRAlignError
    from hralign.policy.gr1 import GR1Config, GR1TrainConfig

    name, _, rest = text.partition(":")
    defaults = {**GR1TrainConfig().to_dict(), **GR1Config().to_dict()}
    out: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise HRAlignError(f"--variant {text!r}: unknown field {key!r}")
        d = defaults[key]
        if isinstance(d, bool):
            if value.lower() not in ("true", "false"):
                raise HRAlignError(f"--variant {text!r}: {key} should be true or false")
            out[key] = value.lower() == "true"
        elif isinstance(d, int):
            out[key] = int(float(value))
        elif isinstance(d, float):
            out[key] = float(value)
        else:
            out[key] = value
    return name or "defaults", out


def load_features(pairs, clips: np.ndarray, encoder: str, size: int, cache: Path) -> dict[int, torch.Tensor]:
    """Frozen features of the robot clips, cached (encoding is the slow part; every run reads the same ones)."""
    from hralign.policy import EncoderSource
    from hralign.policy.features import features_by_clip

    key = {"pairs": str(Path(pairs.path).resolve()), "encoder": encoder, "image_size": size}
    if cache.is_file():
        saved = torch.load(cache)
        if saved["key"] == key:
            return saved["features"]
    torch.manual_seed(0)
    enc = EncoderSource(encoder, image_size=size).robot_encoder().eval()
    feats = features_by_clip(enc, pairs, "robot", clips)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "features": feats}, cache)
    return feats


def report(runs: list[dict[str, Any]], steps_at: list[int] | None = None) -> list[str]:
    """Markdown: per run, train / held-out MSE at the last step, the best held-out MSE and its step, wall time."""
    lines = ["| policy | variant | seed | steps | train MSE | held-out MSE | best held-out MSE (step) | train MSE at best "
             "| wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        curve = r["curve"]
        last = curve[-1]
        best = min(curve, key=lambda c: c["heldout_mse"])
        lines.append(f"| {r['policy']} | {r['variant']} | {r['seed']} | {last['step']} | {last['train_mse']:.4f} | "
                     f"{last['heldout_mse']:.4f} | {best['heldout_mse']:.4f} ({best['step']}) | {best['train_mse']:.4f} "
                     f"| {r['seconds']:.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs")
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--cache", default=None, help="features cache (default: beside --out)")
    ap.add_argument("--heldout", type=float, default=0.2, help="share of each task's episodes held out")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=0, help="stop after N evaluations without a new best (0: never)")
    ap.add_argument("--batch-size", type=int, default=256, help="frames per step (GR-1: // history windows)")
    ap.add_argument("--policies", default="bc,gr1")
    ap.add_argument("--bc-lr", type=float, default=None, help="BC's lr (default its own, 1e-3)")
    ap.add_argument("--variant", action="append", default=None, help="GR-1 variant name:field=value,... (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/gr1_fit/fit.json")
    ap.add_argument("--report", nargs="+", default=None, help="print one table of these JSON files and exit")
    a = ap.parse_args()
    if a.report:
        runs = [r for f in a.report for r in json.loads(Path(f).read_text())["runs"]]
        print("\n".join(report(runs)))
        return
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")
    torch.set_num_threads(a.threads)

    from hralign.errors import HRAlignError
    from hralign.pairs import PairsFile
    from hralign.policy.gr1 import GR1Config
    from hralign.sim.evaluate import bc_demo_mse, demo_table, heldout_split, train_sim_bc
    from hralign.sim.gr1 import gr1_demo_mse, train_sim_gr1
    from hralign.train.early_stop import EarlyStopConfig

    try:
        if not a.pairs:
            raise HRAlignError("--pairs is required")
        variants = [parse_variant(v) for v in (a.variant or ["defaults:"])]
        pairs = PairsFile(a.pairs)
        all_clips = {"robot": np.arange(pairs.num_clips("robot"))}
        train_clips, held = heldout_split(pairs, all_clips, a.heldout, a.split_seed)
        out = Path(a.out)
        feats = {"robot": load_features(pairs, all_clips["robot"], a.encoder, a.image_size,
                                        Path(a.cache) if a.cache else out.parent / "features.pt")}
        tables = {"train": demo_table(pairs, feats, train_clips), "held": demo_table(pairs, feats, held)}
        stop = EarlyStopConfig(every=a.eval_every, patience=a.patience or 10**9, min_improvement=0.0)
        runs: list[dict[str, Any]] = []
        for seed in (int(s) for s in a.seeds.split(",")):
            for policy_kind in a.policies.split(","):
                todo = [("bc", {})] if policy_kind == "bc" else variants if policy_kind == "gr1" else None
                if todo is None:
                    raise HRAlignError(f"--policies: unknown {policy_kind!r}; expected bc, gr1")
                for vname, over in todo:
                    t0 = time.perf_counter()
                    with tempfile.TemporaryDirectory() as run:
                        if policy_kind == "bc":
                            _, final = train_sim_bc(tables["train"], seed, a.steps, a.batch_size, Path(run), lr=a.bc_lr,
                                                    heldout=tables["held"], early_stop=stop,
                                                    extra=lambda p: {"train_mse": bc_demo_mse(p, tables["train"])})
                            rec = final["early_stop"]
                        else:
                            model_over = {k: v for k, v in over.items() if k in GR1Config().to_dict()}
                            cfg = GR1Config(**{"gripper_dims": "none", **model_over})  # sim eval's base config
                            steps = int(over.get("steps", a.steps))
                            train_over = {k: v for k, v in over.items() if k not in model_over and k != "steps"}
                            _, finals, _ = train_sim_gr1(
                                pairs, feats, train_clips, cfg, 0, steps, a.batch_size, seed, Path(run),
                                heldout=held, early_stop=stop, train_overrides=train_over,
                                extra=lambda p, instr: {"train_mse": gr1_demo_mse(p, pairs, feats, train_clips, instr)})
                            rec = finals["early_stop"]
                    r = {"policy": policy_kind, "variant": vname, "overrides": over, "seed": seed,
                         "seconds": time.perf_counter() - t0, **rec}
                    runs.append(r)
                    print("\n".join(report([r])[2:]), flush=True)
    except HRAlignError as e:  # a user error: one line, exit 2 (as the CLI)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "split": {"train": train_clips["robot"].tolist(),
                                                          "heldout": held["robot"].tolist()},
                               "runs": runs}, indent=1), encoding="utf-8")
    print("\n".join(report(runs)))


if __name__ == "__main__":
    main()
