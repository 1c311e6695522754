"""Steps/s of `hralign adapt`'s cached path vs the plain three-branch path, measured in one run.

Plain path: each step runs the frozen encoder on human and robot frames and the adapted encoder
on robot frames. Cached path: frozen features and the robot trunk below the first adapted stage
are computed once; a step runs only the adapted top. Setting: r3m-resnet18, late bottleneck,
96 px, on a synthetic pairs file made here. Prints the measured figures; asserts nothing.

    python benchmarks/adapt_step.py [--steps 30] [--batch-size 16] [--frames 5] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from hralign.adapters import attach_adapter, trainable_parameters
from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt
from hralign.encoders import load_encoder
from hralign.pairs.synth import SynthConfig, synthesize
from hralign.train.loop import Session


def _timed_phases(record: list[float]) -> None:
    """Time hralign.train's training phase (the steps and the end-of-phase checkpoint; no set-up,
    cache build or final evaluation): metrics.jsonl has no wall-clock field."""
    original = Session.run_phase

    def timed(self, phase, index=0, progress=True):
        t0 = time.perf_counter()
        out = original(self, phase, index, progress)
        record.append(time.perf_counter() - t0)
        return out

    Session.run_phase = timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = root / "pairs.h5"
        synthesize(pairs, SynthConfig(num_tasks=8, pairs_per_task=10, frames=16, image_size=args.image_size,
                                      seed=args.seed, val_fraction=0.25))
        enc = load_encoder("r3m-resnet18", image_size=args.image_size)
        adapted = attach_adapter(enc, "bottleneck")
        backbone = sum(p.numel() for p in enc.parameters())
        n_adapter = trainable_parameters(adapted)
        print(f"setting: r3m-resnet18 (random init) + late bottleneck, {args.image_size}px, batch {args.batch_size} "
              f"pairs x {args.frames} frames, {args.steps} steps, {torch.get_num_threads()} threads, seed {args.seed}")
        print(f"trainable adapter parameters: {n_adapter:,} = {100 * n_adapter / backbone:.2f}% of the "
              f"{backbone:,}-parameter backbone")
        rates = {}
        phase_seconds: list[float] = []
        _timed_phases(phase_seconds)
        for name, cache in (("plain", False), ("cached", True)):
            cfg = AdaptConfig(pairs=str(pairs), out=str(root / name), encoder="r3m-resnet18", image_size=args.image_size,
                              frames=args.frames, batch_size=args.batch_size, steps=args.steps, eval_every=0,
                              checkpoint_every=0, device="cpu", seed=args.seed, cache=cache, cache_dir=str(root / "cache"))
            t0 = time.perf_counter()
            run_adapt(cfg, progress=False, echo=lambda *_: None)
            total = time.perf_counter() - t0
            rates[name] = args.steps / phase_seconds[-1]
            print(f"{name:>6} path: {rates[name]:8.2f} steps/s   (whole run incl. set-up, cache build and final eval: {total:.1f} s)")
        print(f"speed-up cached / plain: {rates['cached'] / rates['plain']:.1f}x   (goal >= 5x)")


if __name__ == "__main__":
    main()
