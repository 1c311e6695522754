"""Offline alignment scaling curve: number of pair tasks vs held-out per-frame error and r->h retrieval.

Issue 29's question, offline half: does an adapter trained on pairs of more MetaWorld tasks bring
the robot frames of *unseen* tasks closer to their human partners? For each pair-task count N
(nested sets: the first N tasks of the chunks given, in order) and each objective, one adapter is
trained with `hralign adapt`'s function on the frozen base, then measured on the evaluation file's
held-out pairs (tasks no adapter saw) by the v2 benchmark's alignment function
(:func:`hralign_bench.alignment.alignment_metrics`, ``subset="val"``), beside the frozen base.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/alignment_scaling.py \\
        --chunks A.h5,B.h5,C.h5,D.h5 --eval eval.h5 --out OUT \\
        [--counts 4,8,16,24] [--objectives hralign+frames,hralign+mmd] [--steps 150]

Each chunk is a `hralign sim collect` file; the pairs file of count N is the merge
(:func:`hralign.pairs.merge.merge_files`) of the first chunks whose task counts add up to N
(``OUT/pairs/N{n}.h5``; the first chunk alone is used as is). Runs live in
``OUT/runs/N{n}/{objective}``, the feature caches in ``OUT/cache``; a finished adapter is reused on
a second call (results are kept in ``OUT/results.json`` as they come). Wall times: per adapter
(``adapt_s``: the first adapter of a count also builds that count's feature cache, ``cache_built``
says which) and its held-out measurement (``measure_s``).

Not measured here: closed-loop ``transfer`` per N (``hralign bench metaworld-v2`` with these pair
files; too costly on a shared 2-core machine), so how well the offline figures predict transfer
success is not answered by this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt
from hralign.atomic import write_text_atomic
from hralign.pairs import PairsFile
from hralign.pairs.merge import merge_files
from hralign.pairs.split import split_pairs
from hralign.policy import EncoderSource
from hralign_bench.alignment import alignment_metrics
from hralign_bench.stages import stage_done

# objective name -> the AdaptConfig fields it sets (beside the shared recipe below)
OBJECTIVES = {
    "hralign": {},
    "hralign+frames": {"frame_weight": 1.0},
    "hralign+frames10": {"frame_weight": 10.0},  # the frame term at mmd's weight (is mmd's lead its weight?)
    "hralign+softdtw": {"terms": "softdtw=1"},
    "hralign+sinkhorn": {"terms": "sinkhorn=1"},
    "hralign+mmd": {"terms": "mmd=10"},
    "hralign+frames+sinkhorn": {"frame_weight": 1.0, "terms": "sinkhorn=1"},
}
# the v2 benchmark's adapter recipe (lora:middle, lr 1e-3, 150 steps in its small preset), batch 8 for every N
RECIPE = dict(encoder="r3m-resnet18", image_size=96, method="lora", placement="middle", lr=1e-3, batch_size=8,
              frames=5, seed=0, eval_every=0, device="cpu")
METRICS = ("frame_error", "r2h_top1", "r2h_top5", "knn_r2h")


def nested_files(chunks: list[Path], counts: list[int], out: Path) -> dict[int, Path]:
    """{N: pairs file with the first N tasks}: a chunk prefix whose tasks add up to N, merged once."""
    sizes = [len(PairsFile(c).tasks) for c in chunks]
    files = {}
    for n in counts:
        total, k = 0, 0
        while total < n and k < len(chunks):
            total, k = total + sizes[k], k + 1
        if total != n:
            raise SystemExit(f"--counts {n}: the chunks' task counts {sizes} have no prefix adding up to {n}")
        target = chunks[0] if k == 1 else out / "pairs" / f"N{n}.h5"
        if k > 1 and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            merge_files([str(c) for c in chunks[:k]], target, compression=None)
        files[n] = target
    return files


def train(pairs: Path, run: Path, cache: Path, objective: str, steps: int) -> dict:
    """One adapter (reused when finished); its wall time and adapt's own held-out figures (pair tasks)."""
    if stage_done(run / "adapter") and (run / "timing.json").is_file():
        return json.loads((run / "timing.json").read_text())
    batch = min(RECIPE["batch_size"], *(len(ids) for ids in split_pairs(str(pairs))))
    before = set(cache.glob("*.safetensors")) if cache.is_dir() else set()
    cfg = AdaptConfig(pairs=str(pairs), out=str(run), cache_dir=str(cache), steps=steps,
                      checkpoint_every=max(1, steps // 2), resume=(run / "run.json").is_file(),
                      **{**RECIPE, "batch_size": batch, **OBJECTIVES[objective]})
    t = time.perf_counter()
    final = run_adapt(cfg, progress=False, echo=lambda *_a: None)
    took = time.perf_counter() - t
    built = bool(set(cache.glob("*.safetensors")) - before)
    info = {"adapt_s": took, "cache_built": built, "steps": steps, "batch_size": batch,
            "pair_task_heldout": {k: {m: final[k].get(m) for m in ("frame_error", "r2h_top1")} for k in ("frozen", "adapted")}}
    write_text_atomic(run / "timing.json", json.dumps(info, indent=2))
    return info


def table(results: dict) -> str:
    frozen = results["frozen"]
    lines = ["| pair tasks | objective | held-out frame error (frozen {:.3f}) | adapted - frozen | r->h top-1 (frozen {:.3f}) "
             "| r->h top-5 (frozen {:.3f}) | kNN r->h (frozen {:.3f}) | adapt s | measure s |".format(
                 frozen["frame_error"], frozen["r2h_top1"], frozen["r2h_top5"], frozen["knn_r2h"]),
             "|" + "---|" * 9]
    for key, r in sorted(results["rows"].items(), key=lambda kv: (kv[1]["n_tasks"], kv[1]["objective"])):
        m = r["eval"]
        lines.append(f"| {r['n_tasks']} | {r['objective']} | {m['frame_error']:.3f} | "
                     f"{m['frame_error'] - frozen['frame_error']:+.3f} | {m['r2h_top1']:.3f} | {m['r2h_top5']:.3f} | "
                     f"{m['knn_r2h']:.3f} | {r['adapt_s']:.0f}{' (+cache)' if r['cache_built'] else ''} | "
                     f"{r['measure_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", required=True, help="sim collect files, comma-separated, in nesting order")
    ap.add_argument("--eval", required=True, help="evaluation pairs file (its /split's held-out pairs are measured)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--counts", default="4,8,16,24")
    ap.add_argument("--objectives", default="hralign+frames")
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    objectives = [o for o in args.objectives.split(",") if o]
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise SystemExit(f"--objectives: unknown {unknown}; expected among {', '.join(OBJECTIVES)}")
    counts = [int(c) for c in args.counts.split(",")]
    files = nested_files([Path(c) for c in args.chunks.split(",")], counts, out)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {"rows": {}}
    results.update({"recipe": RECIPE, "objectives": {o: OBJECTIVES[o] for o in objectives}, "eval": args.eval,
                    "pair_tasks": {str(n): PairsFile(f).tasks for n, f in files.items()}})
    if "frozen" not in results:
        t = time.perf_counter()
        results["frozen"] = alignment_metrics(args.eval, EncoderSource(RECIPE["encoder"], image_size=RECIPE["image_size"]),
                                              subset="val")
        results["frozen"]["measure_s"] = time.perf_counter() - t
        write_text_atomic(res_path, json.dumps(results, indent=2))
    for n in counts:
        for objective in objectives:
            key = f"N{n}/{objective}"
            if key in results["rows"]:
                continue
            run = out / "runs" / f"N{n}" / objective
            row = {"n_tasks": n, "objective": objective, **train(files[n], run, out / "cache", objective, args.steps)}
            t = time.perf_counter()
            src = EncoderSource(RECIPE["encoder"], adapter=str(run / "adapter"))
            row["eval"] = alignment_metrics(args.eval, src, subset="val")
            row["measure_s"] = time.perf_counter() - t
            results["rows"][key] = row
            write_text_atomic(res_path, json.dumps(results, indent=2))
            print(f"{key}: frame error {row['eval']['frame_error']:.3f} (frozen {results['frozen']['frame_error']:.3f}), "
                  f"r->h top-1 {row['eval']['r2h_top1']:.3f}, adapt {row.get('adapt_s', 0):.0f}s", flush=True)
    write_text_atomic(out / "table.md", table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
