"""MetaWorld closed loop: GR-1-style policy vs R3M's MLP BC, with and without stage-1 human-video pretraining.

Issue 18, "Must show" 1. Every row uses the same frozen encoder, the same demos (the protocol's clips of
one pairs file from ``hralign sim collect``) and the same goals (``--eval-seed``); rows differ only in
the policy:

* ``bc``          R3M's BC (BatchNorm, 2 x 256, MSE), features + proprio of one frame;
* ``gr1``         the GR-1-style transformer (``hralign.policy.gr1``), stage 2 only;
* ``gr1+stage1``  the same after ``--pretrain-steps`` of stage 1 on every human-view clip of the file
                  (future-feature prediction, actions ignored);
* ``proprio-only`` BC on proprio (the floor), once per protocol.

Success per seed is the fraction of ``--rollouts`` goals solved; the table gives the mean over seeds with
a 95% t-interval over seeds, the pooled success over all seeds x goals with its 95% Wilson interval, and
the paired difference to ``bc`` (same seeds and goals) with a 95% t-interval. Resumable (``--resume``
reuses finished (row, seed) results). Usage (2 shared cores: size it small and say so):

  MUJOCO_GL=egl OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gr1_metaworld.py --pairs mw.h5 --out runs/gr1_mw
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

# two-sided 95% Student t quantiles for 1..9 degrees of freedom (scipy is not a dependency of hralign)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) over ``values`` (half-width nan for one value)."""
    a = np.asarray(values, np.float64)
    if len(a) < 2:
        return float(a.mean()), float("nan")
    return float(a.mean()), T95.get(len(a) - 1, 1.96) * float(a.std(ddof=1)) / math.sqrt(len(a))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n."""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True, help="pairs file from `hralign sim collect`")
    ap.add_argument("--out", default="runs/gr1_mw")
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--encoder-image-size", type=int, default=96)
    ap.add_argument("--protocols", default="robot,few-shot")
    ap.add_argument("--rollouts", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--few-shot", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000, help="BC steps")
    ap.add_argument("--gr1-steps", type=int, default=None, help="GR-1 stage-2 steps (default: --steps)")
    ap.add_argument("--pretrain-steps", type=int, default=1000, help="GR-1 stage-1 steps (gr1+stage1 row)")
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--envs", type=int, default=10)
    ap.add_argument("--history", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--future-delta", type=int, default=3)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rows", default="bc,gr1,gr1+stage1")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")

    from hralign.policy import EncoderSource
    from hralign.policy.gr1 import GR1Config
    from hralign.sim.evaluate import PROPRIO_ROW, SimEvalConfig, evaluate_sim

    out = Path(a.out)
    source = EncoderSource(a.encoder, weights=a.weights, adapter=a.adapter, image_size=a.encoder_image_size)
    gr1 = GR1Config(history=a.history, chunk=a.chunk, future_delta=a.future_delta, dim=a.dim, gripper_dims="none")
    table: dict[str, dict[str, dict]] = {}
    timings: dict[str, float] = {}
    for protocol in a.protocols.split(","):
        table[protocol] = {}
        for row in a.rows.split(","):
            t0 = time.perf_counter()
            is_gr1 = row.startswith("gr1")
            steps = a.gr1_steps if is_gr1 and a.gr1_steps is not None else a.steps
            cfg = SimEvalConfig(protocol=protocol, rollouts=a.rollouts, seeds=a.seeds, few_shot=a.few_shot,
                                steps=steps, max_steps=a.max_steps, envs=a.envs, policy="gr1" if is_gr1 else "bc")
            variants = {row: source}
            if row == "bc":
                variants = {PROPRIO_ROW: None, row: source}
            res = evaluate_sim(a.pairs, out / protocol / row.replace("+", "_"), variants, cfg, resume=a.resume,
                               progress=True, gr1=gr1, pretrain_steps=a.pretrain_steps if row == "gr1+stage1" else 0)
            table[protocol].update(res["variants"])
            timings[f"{protocol}/{row}"] = time.perf_counter() - t0
            print(f"{protocol}/{row}: {timings[f'{protocol}/{row}']:.0f} s", flush=True)

    lines = [f"pairs {a.pairs}; encoder {a.encoder} at {a.encoder_image_size} px (frozen{', adapter' if a.adapter else ''}); "
             f"{a.rollouts} goals x {a.seeds} seeds per cell, {a.max_steps}-step limit; BC {a.steps} steps, GR-1 stage 2 "
             f"{a.gr1_steps or a.steps} steps, stage 1 {a.pretrain_steps} steps; GR-1 history {a.history}, chunk {a.chunk}, delta "
             f"{a.future_delta}, dim {a.dim}", "",
             "| protocol | row | per seed | mean (95% t over seeds) | pooled (95% Wilson, n) | minus bc (95% t) |",
             "|---|---|---|---|---|---|"]
    for protocol, rows in table.items():
        bc = rows.get("bc")
        for name, r in rows.items():
            per = [s["success"] for s in r["per_seed"]]
            m, h = t_interval(per)
            wins = sum(round(s["success"] * a.rollouts) for s in r["per_seed"])
            n = a.rollouts * len(per)
            lo, hi = wilson(wins, n)
            diff = "-"
            if bc is not None and name not in ("bc", PROPRIO_ROW):
                dm, dh = t_interval([x - y["success"] for x, y in zip(per, bc["per_seed"])])
                diff = f"{dm:+.2f} +- {dh:.2f}"
            lines.append(f"| {protocol} | {name} | {' / '.join(f'{x:.2f}' for x in per)} | {m:.2f} +- {h:.2f} | "
                         f"{wins / n:.2f} [{lo:.2f}, {hi:.2f}] n={n} | {diff} |")
    lines += ["", "wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
    text = "\n".join(lines)
    print(text)
    (out / "results.md").write_text(text + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "table": table, "timings": timings}, indent=2),
                                      encoding="utf-8")


if __name__ == "__main__":
    main()
