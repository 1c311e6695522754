"""MetaWorld closed loop: GR-1-style policy vs R3M's MLP BC, with and without stage-1 human-video pretraining.

Every row uses the same frozen encoder, the same demos (the protocol's clips of
one pairs file from ``hralign sim collect``) and the same goals (``--eval-seed``); rows differ only in
the policy:

* ``proprio-only`` BC on proprio (the floor);
* ``bc``          R3M's BC (BatchNorm, 2 x 256, MSE), features + proprio of one frame;
* ``gr1``         the GR-1-style transformer (``hralign.policy.gr1``), stage 2 only;
* ``gr1+stage1``  the same after ``--pretrain-steps`` of stage 1 on every human-view clip of the file,
                  or of ``--pretrain-pairs`` (e.g. the v2 corpus of other tasks, as GR-1 pretrains on
                  Ego4D) (future-feature prediction, actions ignored).

Training: every row takes ``--steps`` optimiser steps of AdamW (``--lr`` for all, default each policy's
own recipe) with ``--batch-size`` frames per step (GR-1: batch_size // history windows of history frames,
every frame a training position with its own action loss). With ``--early-stop-every K`` every row
instead trains to its own held-out fit (``sim eval --early-stop-every``: a seeded 20% of each task's
demos held out, the best weights by held-out action error kept, ``--steps`` the maximum), so rows
compare at equal fit rather than equal steps. Stage 1 comes on top, as in GR-1.

Statistics (``hralign.sim.stats``, as the v2 benchmark): a row's outcomes are a [seeds, goals] 0/1
matrix aligned with every other row's; a paired bootstrap over seeds and goals (the same draws for
every row) gives each row's success with its 95% interval and the paired difference to ``bc`` and,
for ``gr1+stage1``, to ``gr1`` (the stage-1 effect). Each row also reports ``demo MSE``: its action
error on its own training frames (how well it fits the demos). Resumable (``--resume`` reuses
finished (row, seed) results). Usage (2 shared cores: size it small and say so):

  MUJOCO_GL=egl OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gr1_metaworld.py --pairs mw.h5 --out runs/gr1_mw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROWS = ("bc", "gr1", "gr1+stage1")


def statistics(rows: dict[str, dict[str, Any]], tasks: list[str], samples: int) -> dict[str, dict[str, float]]:
    """Paired bootstrap per row: success [CI], minus bc [CI], and for gr1+stage1 minus gr1 [CI] (same draws)."""
    from hralign.sim.stats import outcome_matrix
    from hralign.sim.stats import paired_bootstrap

    mats = {name: outcome_matrix(r, tasks) for name, r in rows.items()}
    out = paired_bootstrap(mats, reference="bc" if "bc" in mats else None, samples=samples)
    if "gr1" in mats and "gr1+stage1" in mats:
        s1 = paired_bootstrap({k: mats[k] for k in ("gr1", "gr1+stage1")}, reference="gr1", samples=samples)
        out["gr1+stage1"].update({f"stage1_{k}": v for k, v in s1["gr1+stage1"].items() if k.startswith("diff")})
    return out


def format_table(table: dict[str, dict[str, Any]], stats: dict[str, Any], tasks: list[str]) -> list[str]:
    """Markdown rows: per-seed success, success [95% CI], differences [95% CI], demo fit, final loss, times."""
    lines = ["| protocol | row | success per seed | success [95% CI] | minus bc [95% CI] | minus gr1 (stage 1) "
             "[95% CI] | demo MSE (per seed) | final train loss | train / rollout s per seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for protocol, rows in table.items():
        for name, r in rows.items():
            b = stats[protocol][name]
            per = sorted(r["per_seed"], key=lambda x: x["seed"])

            def ci(prefix: str, b: dict[str, float] = b) -> str:
                key = prefix + "diff"
                return f"{b[key]:+.2f} [{b[key + '_lo']:+.2f}, {b[key + '_hi']:+.2f}]" if key in b else "-"

            mse = " / ".join(f"{s['demo_mse']:.4f}" if s.get("demo_mse") is not None else "-" for s in per)
            loss = " / ".join(f"{s['final_loss']:.3f}" if s.get("final_loss") is not None else "-" for s in per)
            success = " / ".join(f"{s['success']:.2f}" for s in per)
            lines.append(f"| {protocol} | {name} | {success} | "
                         f"{b['mean']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}] | {ci('')} | {ci('stage1_')} | {mse} | "
                         f"{loss} | {np.mean([s['train_s'] for s in per]):.0f} / "
                         f"{np.mean([s['rollout_s'] for s in per]):.0f} |")
    return lines


COMPARISONS = (("gr1", "bc"), ("gr1+stage1", "gr1"), ("gr1+stage1", "bc"), ("bc", "proprio-only"))


def read_finished(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{protocol: {row: {"per_seed": [...]}}} of every row of a run directory whose seed files 0..n-1 are all
    written (a run in progress reports what it has finished; the seed files are `evaluate_sim`'s own)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for vdir in sorted(p for p in out.glob("*/*/*") if p.is_dir()):
        seeds = sorted(vdir.glob("seed*.json"), key=lambda f: int(f.stem[4:]))
        if not seeds or [int(f.stem[4:]) for f in seeds] != list(range(len(seeds))):
            continue
        protocol = vdir.parent.parent.name
        table.setdefault(protocol, {})[vdir.name] = {
            "per_seed": [json.loads(f.read_text(encoding="utf-8")) for f in seeds]}
    return table


def differences(mats: dict[str, np.ndarray], samples: int) -> list[dict[str, Any]]:
    """Each comparison present in ``mats``: the paired bootstrap over seeds and goals (the v2 tables' interval)
    and the two-way random-effects t interval of `--sequential` (which holds its level when seeds differ;
    with 3 seeds it is the wider and the one to read)."""
    from hralign.sim.sequential import paired_interval
    from hralign.sim.stats import paired_bootstrap

    out = []
    for a, b in COMPARISONS:
        if a in mats and b in mats and mats[a].shape == mats[b].shape:
            boot = paired_bootstrap({b: mats[b], a: mats[a]}, reference=b, samples=samples)[a]
            t = paired_interval(mats[a], mats[b], 0.95)
            out.append({"a": a, "b": b, "diff": t["diff"], "boot_lo": boot["diff_lo"], "boot_hi": boot["diff_hi"],
                        "t_lo": t["lo"], "t_hi": t["hi"], "df": t["df"], "rollouts": int(mats[a].size)})
    return out


def report(dirs: list[Path], samples: int) -> str:
    """Markdown of the finished rows of one or more run directories (collect seeds of the same evaluation: same
    goals, same seeds) and, for two or more, the draws pooled (their seeds stacked on the same goals)."""
    from hralign.sim.stats import outcome_matrix, paired_bootstrap

    tables = {str(d): read_finished(d) for d in dirs}
    lines = []
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, table in tables.items():
        for protocol, rows in table.items():
            tasks = list(next(iter(rows.values()))["per_seed"][0]["per_goal"])
            full = max(len(v["per_seed"]) for v in rows.values())  # rows with fewer seeds are still running
            partial = {r: len(v["per_seed"]) for r, v in rows.items() if len(v["per_seed"]) < full}
            rows = {r: v for r, v in rows.items() if r not in partial}
            mats = {r: outcome_matrix(v, tasks) for r, v in rows.items()}
            shapes = {m.shape for m in mats.values()}
            if len(shapes) > 1:
                raise SystemExit(f"error: {name}/{protocol}: rows with different [seeds, goals] {sorted(shapes)}")
            boot = paired_bootstrap(mats, samples=samples)
            lines += [f"### {name}: {protocol} ({', '.join(tasks)}; {next(iter(shapes))[0]} seeds x "
                      f"{next(iter(shapes))[1]} goals per row)", "",
                      "| row | success per seed | success [95% CI] | chosen step per seed (held-out MSE) | "
                      "demo MSE per seed |", "|---|---|---|---|---|"]
            for r, v in rows.items():
                per = sorted(v["per_seed"], key=lambda x: x["seed"])
                chosen = " / ".join(f"{x['early_stop']['best_step']} ({x['early_stop']['best_heldout_mse']:.4f})"
                                    if x.get("early_stop") else "-" for x in per)
                mse = " / ".join(f"{x['demo_mse']:.4f}" if x.get("demo_mse") is not None else "-" for x in per)
                success = " / ".join(format(x["success"], ".2f") for x in per)
                lines.append(f"| {r} | {success} | "
                             f"{boot[r]['mean']:.2f} [{boot[r]['lo']:.2f}, {boot[r]['hi']:.2f}] | {chosen} | {mse} |")
                pooled.setdefault(protocol, {}).setdefault(r, []).append(mats[r])
            if partial:
                lines.append("| " + "; ".join(f"{r}: {n} seed(s) finished so far" for r, n in partial.items())
                             + " | | | | |")
            lines += _difference_lines(differences(mats, samples))
    if len(dirs) > 1:
        for protocol, rows in pooled.items():
            mats = {r: np.vstack(m) for r, m in rows.items() if len(m) == len(dirs)}
            if not mats:  # no row finished in every draw yet
                continue
            lines += [f"### pooled over {len(dirs)} draws: {protocol} (seeds stacked on the same goals)", "",
                      "| row | success |", "|---|---|"]
            lines += [f"| {r} | {m.mean():.2f} |" for r, m in mats.items()]
            lines += _difference_lines(differences(mats, samples))
    return "\n".join(lines)


def _difference_lines(diffs: list[dict[str, Any]]) -> list[str]:
    return ["", "| difference | mean | paired bootstrap 95% | random-effects t 95% (df) | rollouts per row |",
            "|---|---|---|---|---|"] + [
        f"| {d['a']} - {d['b']} | {d['diff']:+.2f} | [{d['boot_lo']:+.2f}, {d['boot_hi']:+.2f}] | "
        f"[{d['t_lo']:+.2f}, {d['t_hi']:+.2f}] ({d['df']:.0f}) | {d['rollouts']} |" for d in diffs] + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", help="pairs file from `hralign sim collect` (required unless --report)")
    ap.add_argument("--out", default="runs/gr1_mw")
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--encoder-image-size", type=int, default=96)
    ap.add_argument("--protocols", default="robot,few-shot")
    ap.add_argument("--rollouts", type=int, default=10, help="goals per task (the same for every row and seed)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--few-shot", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000, help="optimiser steps of every row (GR-1: stage 2)")
    ap.add_argument("--batch-size", type=int, default=256, help="frames per step of every row")
    ap.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate of every row (default: each "
                    "policy's own recipe, BC 1e-3, GR-1 GR1TrainConfig's)")
    ap.add_argument("--pretrain-steps", type=int, default=1000, help="GR-1 stage-1 steps (gr1+stage1 row)")
    ap.add_argument("--pretrain-pairs", default=None, help="file whose human clips the gr1+stage1 row's stage 1 reads "
                    "(all of them; e.g. the v2 corpus of other tasks) instead of --pairs'")
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--envs", type=int, default=10)
    ap.add_argument("--history", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--future-delta", type=int, default=3)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=None, help="GR-1 dropout (default GR1Config's)")
    ap.add_argument("--early-stop-every", type=int, default=0,
                    help="train every row to its own held-out fit (sim eval --early-stop-every; --steps the maximum)")
    ap.add_argument("--early-stop-patience", type=int, default=5)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", nargs="+", metavar="OUT", help="only report the finished rows of these run "
                    "directories (collect seeds of one evaluation) and, for several, the draws pooled")
    a = ap.parse_args()
    if a.report:
        missing = [d for d in a.report if not Path(d).is_dir()]
        if missing:
            ap.error(f"--report: not a directory: {', '.join(missing)}")  # exit 2
        print(report([Path(d) for d in a.report], a.bootstrap))
        return
    if not a.pairs:
        ap.error("--pairs is required unless --report")
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")

    from hralign.errors import HRAlignError
    from hralign.policy import EncoderSource
    from hralign.policy.gr1 import GR1Config
    from hralign.sim.evaluate import PROPRIO_ROW, SimEvalConfig, evaluate_sim

    rows = a.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        ap.error(f"--rows: unknown {unknown}; expected some of {', '.join(ROWS)}")  # exit 2
    out = Path(a.out)
    source = EncoderSource(a.encoder, weights=a.weights, adapter=a.adapter, image_size=a.encoder_image_size)
    gr1 = GR1Config(history=a.history, chunk=a.chunk, future_delta=a.future_delta, dim=a.dim, gripper_dims="none",
                    **({"dropout": a.dropout} if a.dropout is not None else {}))
    table: dict[str, dict[str, dict]] = {}
    timings: dict[str, float] = {}
    tasks: list[str] = []
    try:
        for protocol in a.protocols.split(","):
            table[protocol] = {}
            for row in rows:
                t0 = time.perf_counter()
                is_gr1 = row.startswith("gr1")
                cfg = SimEvalConfig(protocol=protocol, rollouts=a.rollouts, seeds=a.seeds, few_shot=a.few_shot,
                                    steps=a.steps, batch_size=a.batch_size, lr=a.lr, max_steps=a.max_steps,
                                    envs=a.envs, kind="gr1" if is_gr1 else "bc",
                                    early_stop_every=a.early_stop_every, early_stop_patience=a.early_stop_patience)
                variants = {PROPRIO_ROW: None, row: source} if row == "bc" else {row: source}
                stage1 = row == "gr1+stage1" and a.pretrain_steps > 0
                res = evaluate_sim(a.pairs, out / protocol / row.replace("+", "_"), variants, cfg, resume=a.resume,
                                   progress=True, gr1=gr1, pretrain_steps=a.pretrain_steps if stage1 else 0,
                                   train_options={"pretrain_pairs": a.pretrain_pairs} if stage1 and a.pretrain_pairs
                                   else None)
                tasks = list(res["collect"]["tasks"])
                table[protocol].update(res["variants"])
                timings[f"{protocol}/{row}"] = time.perf_counter() - t0
                print(f"{protocol}/{row}: {timings[f'{protocol}/{row}']:.0f} s", flush=True)
    except HRAlignError as e:  # a user error: one line, exit 2 (as the CLI)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    stats = {p: statistics(r, tasks, a.bootstrap) for p, r in table.items()}
    n = a.rollouts * len(tasks) * a.seeds
    lr_text = a.lr if a.lr is not None else "each policy's own"
    lines = [f"pairs {a.pairs}; encoder {a.encoder} at {a.encoder_image_size} px (frozen{', adapter' if a.adapter else ''}); "
             f"{a.rollouts} goals/task x {a.seeds} seeds = {n} rollouts per cell, {a.max_steps}-step limit; every row "
             f"{a.steps} steps x {a.batch_size} frames, AdamW lr {lr_text}; GR-1 stage 1 {a.pretrain_steps} steps on "
             f"{a.pretrain_pairs or 'the file'}'s human clips; GR-1 "
             f"history {a.history}, chunk {a.chunk}, delta {a.future_delta}, dim {a.dim}, dropout {gr1.dropout:g}; "
             + (f"early stopping every {a.early_stop_every} steps, patience {a.early_stop_patience}; "
                if a.early_stop_every else "") +
             f"95% CIs: paired bootstrap over seeds and goals ({a.bootstrap} resamples)", ""]
    lines += format_table(table, stats, tasks)
    lines += ["", "wall time (this invocation; resumed rows count only what was left): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())]
    text = "\n".join(lines)
    print(text)
    (out / "results.md").write_text(text + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "table": table, "stats": stats,
                                                  "timings": timings}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
