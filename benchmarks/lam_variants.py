"""Probe table of LAM variants: which LAM's latents carry the robot's action (issue 30, item 3).

Trains each variant on the human view of a corpus (the v2 benchmark's LAM stage: conv IDM, 32
channels, dim 64, 16 px patches, gap 3, codebook 8 x 4; hralign.sim.latent.LAM_OPTIONS), one after
another, labels the evaluation file (tasks the LAM never saw, both views) and measures it with
hralign.lam.measures (the measures of `hralign lam eval` and of the v2 LAM stage): action probe R^2
onto robot actions with its shuffled-label control, the proprio-only floor and latents + proprio;
reconstruction against copying x_t and against shuffled latents; perplexity; cross-embodiment kNN of
task and motion phase on disjoint episodes; code NMI against discretised actions; train wall time.
Prints and writes measured figures; asserts nothing. A variant whose measures.json exists is not
rerun (resume after an interruption).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/lam_variants.py --corpus corpus.h5 --eval eval.h5 \\
        --action-pairs pairs.h5 --out runs/lam_variants --results benchmarks/results/lam_variants --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from hralign.atomic import write_text_atomic
from hralign.lam.labels import label_pairs
from hralign.lam.measures import measure_lam
from hralign.lam.train import LAMTrainConfig, config_for_pairs, train_lam
from hralign.sim.latent import LAM_OPTIONS

# name -> (LAMConfig options over the v2 stage's, LAMTrainConfig options, what it tests)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "init": ({}, {"steps": 1}, "the baseline after 1 step (a random-init IDM: what the architecture gives untrained)"),
    "init-gap6": ({"gap": 6}, {"steps": 1}, "gap 6 after 1 step (the untrained control of gap6)"),
    "baseline": ({}, {}, "the v2 stage's LAM (pixels, gap 3, VQ nsvq 8 x 4)"),
    "gap1": ({"gap": 1}, {}, "frame gap 1"),
    "gap6": ({"gap": 6}, {}, "frame gap 6"),
    "motion": ({"motion_weight": 5.0}, {}, "motion-weighted pixel loss, W = 5"),
    "continuous": ({"quantizer": "none"}, {}, "continuous latents (no VQ; codebook only clusters for labels)"),
    "features": ({"target": "features", "target_encoder": "r3m-resnet18", "target_image_size": 96}, {},
                 "FDM rebuilds random-init r3m-resnet18 layer4 features at 96 px (3x3x512)"),
    "action2.5": ({}, {"action_weight": 1.0, "action_fraction": 0.025},
                  "2.5% of the pairs file's robot frame pairs labelled, linear head, weight 1 (LAOM)"),
    "patch8": ({"patch_size": 8}, {}, "8 px patches"),
    "continuous+action2.5": ({"quantizer": "none"}, {"action_weight": 1.0, "action_fraction": 0.025},
                             "continuous latents + 2.5% action labels"),
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    model_opts, train_opts, what = VARIANTS[name]
    out = Path(args.out) / name
    done = out / "measures.json"
    if done.is_file():
        return json.loads(done.read_text())
    if "action_weight" in train_opts:
        train_opts = {**train_opts, "action_pairs": args.action_pairs}
    steps = int(train_opts.get("steps", args.steps))
    train_opts = {k: v for k, v in train_opts.items() if k != "steps"}
    load_before = uptime()
    t0 = time.perf_counter()
    cfg = LAMTrainConfig(pairs=args.corpus, out=str(out / "lam"), domain="human", steps=steps,
                         batch_size=args.batch_size, seed=args.seed, eval_every=0, checkpoint_every=0,
                         log_every=max(1, steps // 4), eval_pairs=256, overwrite=True, device="cpu", **train_opts)
    final = train_lam(config_for_pairs(args.corpus, "human", **{**LAM_OPTIONS, **model_opts}), cfg, progress=False)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    labels = label_pairs(args.eval, out / "lam", out / "labels.h5", overwrite=True)
    measures = measure_lam(labels, args.eval, out / "lam", seed=args.seed)
    rec = {"variant": name, "what": what, "model_options": {**LAM_OPTIONS, **model_opts}, "train_options": train_opts,
           "steps": steps, "batch_size": args.batch_size, "seed": args.seed, "train_s": train_s,
           "measure_s": time.perf_counter() - t1, "corpus_eval": final, "eval": measures,
           "uptime_before": load_before, "uptime_after": uptime()}
    write_text_atomic(done, json.dumps(rec, indent=1) + "\n")
    return rec


def _f(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}"


def table(records: list[dict[str, Any]]) -> list[str]:
    head = ("| variant | steps | train s | probe R² robot (shuffled) | proprio floor | latents+proprio | probe R² human view | "
            "recon / copy / shuffled MSE, robot view (explained vs copy) | perplexity (of 8) | kNN h→r task (shuf) | "
            "kNN h→r phase (shuf) | kNN r→h task | kNN r→h phase | kNN r→r task / phase | NMI robot (codes shuffled) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        m = r["eval"]
        p = m["probe"].get("robot", {})
        ph = m["probe"].get("human", {})
        rec = m["reconstruction"].get("robot", {})
        knn = m["knn"]
        hr, rh, rr = knn.get("human->robot", {}), knn.get("robot->human", {}), knn.get("robot->robot", {})
        nmi = m["nmi"].get("robot", {})
        recon = (f"{rec['recon_mse']:.5f} / {rec['copy_mse']:.5f} / {rec['shuffled_action_mse']:.5f} "
                 f"({_f(rec['explained_vs_copy'])})") if "psnr" in rec else \
            f"features: {rec['recon_mse']:.4f} / {rec['copy_mse']:.4f} / {rec['shuffled_action_mse']:.4f} ({_f(rec['explained_vs_copy'])})"
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['train_s']:.0f} | {_f(p['action_probe_r2'])} ({_f(p['action_probe_r2_shuffled'])}) "
            f"| {_f(p['action_probe_r2_proprio'])} | {_f(p['action_probe_r2_with_proprio'])} | {_f(ph['action_probe_r2'])} "
            f"| {recon} | {rec['perplexity']:.2f} | {_f(hr['task'], 2)} ({_f(hr['task_shuffled'], 2)}) "
            f"| {_f(hr['phase'], 2)} ({_f(hr['phase_shuffled'], 2)}) | {_f(rh['task'], 2)} | {_f(rh['phase'], 2)} "
            f"| {_f(rr['task'], 2)} / {_f(rr['phase'], 2)} | {_f(nmi['nmi'])} ({_f(nmi['nmi_shuffled'])}) |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="pairs file whose human view the LAMs train on")
    ap.add_argument("--eval", required=True, help="evaluation pairs file (both views, robot actions and proprio)")
    ap.add_argument("--action-pairs", default="", help="pairs file whose robot clips label the action2.5 variants")
    ap.add_argument("--out", required=True, help="run directory (LAMs, labels, per-variant measures.json)")
    ap.add_argument("--results", default="", help="where results.json and results.md go (default --out)")
    ap.add_argument("--variants", default="baseline,action2.5,continuous,motion,gap1,gap6,init,features")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--command", default="", help="the command line to record in results.md")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known {list(VARIANTS)}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    records = []
    for name in names:
        rec = run_variant(name, args)
        if rec["train_options"].get("action_pairs"):  # the file's name only: results never point outside the repo
            rec["train_options"] = {**rec["train_options"], "action_pairs": Path(rec["train_options"]["action_pairs"]).name}
        records.append(rec)
        print(f"{name}: " + table([rec])[-1], flush=True)
    results = Path(args.results or args.out)
    results.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "command": args.command, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
            "variants": {n: VARIANTS[n][2] for n in names}}
    write_text_atomic(results / "results.json", json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    lines = ["# LAM variants: probe table", "", f"Command: `{args.command}`", "",
             f"{args.steps} steps x batch {args.batch_size}, seed {args.seed}, {meta['machine']}, "
             f"{meta['cpus']} CPUs, torch threads {meta['torch_threads']}.", "", *table(records), "",
             "Variants:", ""] + [f"- **{n}**: {VARIANTS[n][2]}; load before/after: `{r['uptime_before']}` / "
                                  f"`{r['uptime_after']}`" for n, r in zip(names, records)]
    write_text_atomic(results / "results.md", "\n".join(lines) + "\n")
    print("\n".join(table(records)))


if __name__ == "__main__":
    main()
