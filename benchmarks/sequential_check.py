"""Check the sequential rule of ``hralign.sim.sequential`` without running a rollout.

1. Null simulation: many comparisons of two rows with the same success rate (paired, goal difficulty
   shared): the share in which a difference is declared must stay <= alpha (0.05).
2. Replay on a committed v2 run (per-seed files re-read, nothing re-run): for every row of a protocol
   against ``frozen`` (and the latent chain against its control), how many rollouts the rule would have
   used and what it would have concluded, beside the fixed-size paired bootstrap of the full run.

Usage:
    python benchmarks/sequential_check.py --run benchmarks/results/metaworld-v2/full-preset-seed0 \
        [--protocol robot] [--round-size 10] [--target-half-width 0.05] [--null 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hralign.sim.sequential import SequentialConfig, describe, null_pair, replay, simulate_null
from hralign.sim.stats import outcome_matrix, paired_bootstrap
from hralign_bench.v2 import LATENT_CONTROL_ROW, LATENT_ROW


def read_rows(run: Path, protocol: str) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Row -> [seeds, goals] outcomes from the run's per-seed files; the tasks; goals per task."""
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    tasks = list(results["tasks"]["eval"])
    rows: dict[str, np.ndarray] = {}
    for row_dir in sorted((run / "eval" / protocol).iterdir()):
        for name_dir in row_dir.iterdir():
            seeds = sorted(name_dir.glob("seed*.json"))
            if name_dir.is_dir() and seeds:
                per_seed = [json.loads(s.read_text(encoding="utf-8")) for s in seeds]
                rows[name_dir.name] = outcome_matrix({"per_seed": per_seed}, tasks)
    goals = len(json.loads(seeds[0].read_text(encoding="utf-8"))["per_goal"][tasks[0]])
    return rows, tasks, goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--protocol", default="robot")
    ap.add_argument("--round-size", type=int, default=10)
    ap.add_argument("--target-half-width", type=float, default=0.05)
    ap.add_argument("--null", type=int, default=1000, help="simulated null comparisons per success level")
    ap.add_argument("--seed-effect", type=float, nargs="+", default=[0.5, 1.0],
                    help="std of each (row, BC seed) policy's logit shift in the null simulation")
    ap.add_argument("--spending", default="obrien-fleming")
    ap.add_argument("--fixed-null", type=int, default=0,
                    help="also simulate this many null comparisons through the fixed design's own interval (95%% "
                         "percentile paired bootstrap, one look: the v2 tables' rule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cfg = SequentialConfig(round_size=args.round_size, target_half_width=args.target_half_width, spending=args.spending)
    rows, tasks, goals = read_rows(args.run, args.protocol)
    seeds = next(iter(rows.values())).shape[0]
    looks = cfg.looks(goals)
    print(f"rule: {describe(cfg, looks)}; round {cfg.round_size} goals/task x {len(tasks)} tasks x {seeds} seeds, "
          f"target half-width {cfg.target_half_width}")

    out: dict = {"config": cfg.to_dict(), "looks": looks, "null": [], "replay": []}
    rng = np.random.default_rng(args.seed)
    print("\n| simulated null: success | seed effect (logit std) | comparisons | declared | rate [95% CI] | "
          "mean rollouts / max |")
    print("|---|---|---|---|---|---|")
    for effect in args.seed_effect if args.null else ():
        for p in (0.1, 0.3, 0.5):
            r = simulate_null(args.null, seeds, len(tasks), goals, cfg, rng, success=p, seed_effect=effect)
            out["null"].append(r)
            print(f"| {p:.1f} | {effect} | {r['comparisons']} | {r['declared']} | {r['rate']:.3f} [{r['rate_lo']:.3f}, "
                  f"{r['rate_hi']:.3f}] | {r['mean_rollouts']:.0f} / {r['max_rollouts']} |", flush=True)

    if args.fixed_null:
        print("\n| fixed design (95% percentile paired bootstrap, one look): seed effect | comparisons | declared | rate |")
        print("|---|---|---|---|")
        for effect in args.seed_effect:
            declared = 0
            for _ in range(args.fixed_null):
                a, b = null_pair(rng, seeds, len(tasks) * goals, 0.3, effect)
                r = paired_bootstrap({"a": a, "b": b}, reference="b", samples=1000)["a"]
                declared += r["diff_lo"] > 0 or r["diff_hi"] < 0
            out.setdefault("fixed_null", []).append({"seed_effect": effect, "comparisons": args.fixed_null,
                                                     "declared": declared})
            print(f"| {effect} | {args.fixed_null} | {declared} | {declared / args.fixed_null:.3f} |", flush=True)

    pairs = [(v, "frozen") for v in rows if v != "frozen" and "frozen" in rows]
    if LATENT_ROW in rows and LATENT_CONTROL_ROW in rows:
        pairs.append((LATENT_ROW, LATENT_CONTROL_ROW))
    print(f"\n| {args.protocol}: comparison | fixed {seeds * goals * len(tasks)}: diff [95% bootstrap] | sequential: "
          f"stop | rollouts | diff [interval] | same conclusion |")
    print("|---|---|---|---|---|---|")
    total_fixed = total_seq = 0
    for a, b in pairs:
        fixed = paired_bootstrap({a: rows[a], b: rows[b]}, reference=b)[a]
        fixed_resolved = fixed["diff_lo"] > 0 or fixed["diff_hi"] < 0
        s = replay(rows[a], rows[b], goals, len(tasks), cfg)
        same = (s["stop"] == "resolved") == fixed_resolved and (s["stop"] != "resolved" or
                                                                  np.sign(s["diff"]) == np.sign(fixed["diff"]))
        total_fixed += rows[a].size
        total_seq += s["rollouts"]
        out["replay"].append({"row": a, "reference": b, "fixed": fixed, "fixed_resolved": fixed_resolved,
                              "sequential": s, "same_conclusion": bool(same)})
        print(f"| {a} - {b} | {fixed['diff']:+.2f} [{fixed['diff_lo']:+.2f}, {fixed['diff_hi']:+.2f}]"
              f"{' resolved' if fixed_resolved else ''} | {s['stop']} at look {s['look']} | {s['rollouts']} | "
              f"{s['diff']:+.2f} [{s['lo']:+.2f}, {s['hi']:+.2f}] | {'yes' if same else 'NO'} |")
    print(f"\nrollouts of the compared rows: fixed {total_fixed}, sequential {total_seq} "
          f"({total_seq / max(total_fixed, 1):.2f} of fixed)")
    out["rollouts"] = {"fixed": total_fixed, "sequential": total_seq}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
