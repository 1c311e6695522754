"""Training steps per second of each trainer (adapt, lam, pretrain, policy) on the shared training layer.

Same run, same synthetic data (seeded), same global batch: each trainer on CPU with 1 and with 2
processes (``torchrun``, gloo), and, when CUDA is present, on one GPU in fp32 and in bf16 (rows
skipped cleanly otherwise). What is timed is :meth:`hralign.train.Session.run_phase` (the training
steps and the end-of-phase checkpoint; evaluation and periodic checkpoints off), so start-up,
feature caching and final writes are left out. Ratios are against the 1-process CPU row of the
same trainer, measured in the same run.

    python benchmarks/train_step.py --out /tmp/train_step [--steps 40] [--seed 0]

On CPU, 2 processes share the machine's cores with each other (OMP_NUM_THREADS is split), so the
2-process row measures the overhead of the layer's DDP path more than a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TRAINERS = ("adapt", "lam", "pretrain", "policy")


def _args(trainer: str, pairs: Path, out: Path, steps: int, seed: int, device: str, precision: str) -> list[str]:
    """The CLI call of one trainer: a small but real configuration (64 px frames)."""
    common = ["--out", str(out), "--steps", str(steps), "--seed", str(seed), "--device", device, "--precision", precision,
              "--eval-every", "0", "--checkpoint-every", "0", "--log-every", "10", "--overwrite"]
    if trainer == "adapt":
        return ["adapt", "--pairs", str(pairs), "--encoder", "r3m-resnet18", "--image-size", "64", "--batch-size", "16",
                "--method", "lora", "--placement", "middle", "--cache-dir", str(out.parent / "cache"), *common]
    if trainer == "lam":
        return ["lam", "train", "--pairs", str(pairs), "--idm", "conv", "--conv-channels", "32", "--patch-size", "8",
                "--dim", "64", "--gap", "3", "--batch-size", "32", *common]
    if trainer == "pretrain":
        return ["pretrain", "--pairs", str(pairs), "--encoder", "r3m-resnet18", "--image-size", "64", "--batch-size", "8",
                "--text-encoder", "none", "--quiet", *common]
    return ["policy", "train", "--pairs", str(pairs), "--encoder", "r3m-resnet18", "--image-size", "64", "--head", "bc",
            "--batch-size", "256", "--no-progress", *common]


def worker(argv: list[str], record: Path) -> None:
    """Run one CLI call with Session.run_phase timed; the main process appends (phase, steps, seconds)."""
    from hralign.cli.main import main
    from hralign.train.loop import Session

    original = Session.run_phase

    def timed(self, phase, index=0, progress=True):
        t0 = time.perf_counter()
        out = original(self, phase, index, progress)
        seconds = time.perf_counter() - t0
        if self.is_main:
            with open(record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"phase": phase.name, "steps": phase.steps, "seconds": seconds,
                                    "processes": self.world}) + "\n")
        return out

    Session.run_phase = timed
    main(argv)


def measure(trainer: str, pairs: Path, root: Path, steps: int, seed: int, procs: int, device: str,
            precision: str) -> float:
    """Steps per second of ``trainer`` in ``procs`` processes on ``device`` / ``precision``."""
    name = f"{trainer}-{device}-{precision}-{procs}p"
    record = root / f"{name}.jsonl"
    record.unlink(missing_ok=True)
    cli = _args(trainer, pairs, root / name, steps, seed, device, precision)
    threads = max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(HERE.parent.parent)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    launcher = [sys.executable] if procs == 1 else [str(Path(sys.executable).parent / "torchrun"),
                                                    "--nproc_per_node", str(procs), "--master_port", str(29600 + seed)]
    proc = subprocess.run([*launcher, str(HERE), "--worker", str(record), "--", *cli], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    return sum(r["steps"] for r in rows) / sum(r["seconds"] for r in rows)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":  # one timed run: --worker RECORD -- CLI ARGS
        worker(sys.argv[4:], Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Scratch directory (synthetic data, runs).")
    parser.add_argument("--steps", type=int, default=40, help="Steps per run (the same in every row).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="Comma-separated subset of " + ",".join(TRAINERS))
    args = parser.parse_args()

    import torch

    from hralign.pairs.synth import SynthConfig, synthesize

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    pairs = root / "pairs.h5"
    if not pairs.exists():
        synthesize(pairs, SynthConfig(num_tasks=8, pairs_per_task=12, frames=16, image_size=64, seed=args.seed))
    configs = [("cpu", "fp32", 1), ("cpu", "fp32", 2)]
    if torch.cuda.is_available():
        configs += [("cuda", "fp32", 1), ("cuda", "bf16", 1)]
    else:
        print("no CUDA device: GPU rows skipped")
    print(f"steps/s, {args.steps} steps per run, seed {args.seed}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores")
    print(f"| trainer | {' | '.join(f'{d} {p} {n}p' for d, p, n in configs)} |")
    print(f"|---|{'---|' * len(configs)}")
    for trainer in args.trainers.split(","):
        rates = [measure(trainer, pairs, root, args.steps, args.seed, n, d, p) for d, p, n in configs]
        cells = [f"{r:.2f}" + ("" if i == 0 else f" ({r / rates[0]:.2f}x)") for i, r in enumerate(rates)]
        print(f"| {trainer} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
