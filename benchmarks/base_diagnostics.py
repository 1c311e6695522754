"""Diagnostics beside every base, and whether any of them ranks the bases as closed loop does.

``run``: :func:`hralign_bench.diagnostics.base_diagnostics` (frame participation ratio, action probe
R^2 with its proprio floor, BC demo fit on training and held-out episodes, robot->robot kNN) for each
base on the robot clips of an evaluation file (v2's eval.h5). A base is ``name=SPEC``:

* a registry name (``r3m-resnet18``): that encoder's random init;
* a directory: a pretrained base (``hralign pretrain --out``), an encoder or an adapter directory;
* ``objective:NAME``: pretrain one with ``hralign pretrain --objective NAME`` on ``--corpus`` (human
  views, ``--pretrain-steps``, seed ``--pretrain-seed``, at the eval file's image size) into
  ``--work/pretrain-NAME-STEPS`` first (reused when finished there, resumed when interrupted).

    OMP_NUM_THREADS=1 python benchmarks/base_diagnostics.py run --pairs eval.h5 \
        --base random-init=r3m-resnet18 --base r3m-150=objective:r3m --corpus corpus.h5 --pretrain-steps 150 \
        --out benchmarks/results/base_diagnostics/smoke.json

writes OUT (JSON: per base its spec, figures, pretraining record; the command, load, seeds) and
OUT with .md; a base already in OUT with the same spec and settings is kept (``--force`` redoes it).

``rank``: Spearman's rho of each diagnostic with closed-loop success across bases, with a bootstrap
95% interval over bases. Success is the mean over v2 ``results.json`` files (e.g. both collect
seeds) of a row's success under ``--protocol``; diagnostics come from ``--diagnostics`` files (base
names matched to rows by ``--match base=row`` or by equal names) or, without them, from each results
file's own records (its spread on the eval file and its BC rows' demo MSE), one correlation per file.

    python benchmarks/base_diagnostics.py rank --results A/results.json B/results.json [--diagnostics OUT.json]

Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

EXCLUDED_ROWS = ("proprio-only",)  # not a base: no image features


def _portable(path: str | Path) -> str:
    """A path as committed results may show it: relative inside the working directory, else its last two parts."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(*p.parts[-2:]))


def _command() -> str:
    """This invocation, paths outside the working directory shortened by :func:`_portable` (committed results
    name no file outside the repository)."""
    def one(tok: str) -> str:
        head, sep, tail = tok.partition("=")
        if sep and not tok.startswith("-") and Path(tail).exists():
            return f"{head}={_portable(tail)}"
        return _portable(tok) if Path(tok).exists() else tok
    return "python benchmarks/base_diagnostics.py " + " ".join(shlex.quote(one(x)) for x in sys.argv[1:])


def _load() -> tuple[float, float, float]:
    return os.getloadavg()


def parse_base(item: str) -> tuple[str, str]:
    from hralign.errors import HRAlignError

    name, sep, spec = item.partition("=")
    if not sep or not name or not spec:
        raise HRAlignError(f"--base {item!r}: expected NAME=SPEC (a registry name, a directory or objective:NAME)")
    return name, spec


def pretrain_base(spec: str, a: argparse.Namespace, image_size: int) -> tuple[Path, dict[str, Any]]:
    """``objective:NAME`` -> the directory of a finished short pretraining (run or reused) and its record."""
    from hralign.errors import HRAlignError
    from hralign.pretrain import PretrainConfig, pretrain
    from hralign.pretrain.objectives import OBJECTIVES
    from hralign_bench.stages import stage_done

    objective = spec.split(":", 1)[1]
    if objective not in OBJECTIVES:
        raise HRAlignError(f"--base ...=objective:{objective}: unknown objective; expected one of {', '.join(OBJECTIVES)}")
    if not a.corpus or not Path(a.corpus).is_file():
        raise HRAlignError(f"--corpus {a.corpus!r}: objective:{objective} pretrains on it; give an existing pairs file")
    target = Path(a.work) / f"pretrain-{objective.replace('+', '_')}-{a.pretrain_steps}"
    record = {"objective": objective, "encoder": a.base_encoder, "steps": a.pretrain_steps, "seed": a.pretrain_seed,
              "corpus": _portable(a.corpus), "image_size": image_size, "domain": "human"}
    wall = target / "wall_seconds.json"
    if not stage_done(target):
        cfg = PretrainConfig(pairs=str(a.corpus), out=str(target), domain="human", encoder=a.base_encoder,
                             objective=objective, image_size=image_size, steps=a.pretrain_steps, seed=a.pretrain_seed,
                             eval_every=0, checkpoint_every=max(1, a.pretrain_steps // 5),
                             resume=(target / "run.json").is_file())
        t, load0 = time.perf_counter(), _load()
        pretrain(cfg, progress=False, log=lambda _m: None)
        wall.write_text(json.dumps({"seconds": time.perf_counter() - t, "load_before": load0, "load_after": _load()}))
    summary = json.loads((target / "summary.json").read_text(encoding="utf-8"))
    record.update({"initial": summary.get("initial"), "final": summary.get("final")})
    if wall.is_file():
        record["wall"] = json.loads(wall.read_text(encoding="utf-8"))
    return target, record


def run(a: argparse.Namespace) -> None:
    from hralign.atomic import write_text_atomic
    from hralign.errors import HRAlignError
    from hralign.pairs import PairsFile
    from hralign.policy import EncoderSource
    from hralign_bench.diagnostics import DiagnosticsConfig, base_diagnostics, format_diagnostics

    if not a.pairs or not Path(a.pairs).is_file():
        raise HRAlignError(f"--pairs {a.pairs!r}: expected an existing evaluation pairs file (v2's eval.h5)")
    if not a.base:
        raise HRAlignError("--base NAME=SPEC: give at least one base")
    if a.pretrain_steps < 1:
        raise HRAlignError(f"--pretrain-steps should be an integer >= 1 but the value passed is {a.pretrain_steps}")
    bases = [parse_base(b) for b in a.base]
    config = DiagnosticsConfig(bc_steps=a.bc_steps, heldout=a.heldout, split_seed=a.split_seed, bc_seed=a.bc_seed)
    size = int(PairsFile(a.pairs).frame_shape("robot")[0])
    out = Path(a.out)
    results = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    done = results.get("bases", {})
    for name, spec in bases:
        prior = done.get(name)
        if prior and not a.force and prior.get("spec") == spec and prior.get("config") == config.to_dict() \
                and (not spec.startswith("objective:") or prior.get("pretrain", {}).get("steps") == a.pretrain_steps):
            print(f"{name}: kept from {out}", flush=True)
            continue
        pre = None
        if spec.startswith("objective:"):
            directory, pre = pretrain_base(spec, a, size)
            source = EncoderSource(str(directory), image_size=size)
        else:
            source = EncoderSource(spec, image_size=size)
        t, load0 = time.perf_counter(), _load()
        cache = Path(a.work) / "features" / f"{name.replace('/', '_')}.pt"
        d = base_diagnostics(a.pairs, source, config, cache=cache)
        d.update({"spec": spec if not Path(spec).exists() else _portable(spec), "seconds_total": time.perf_counter() - t,
                  "load_before": load0, "load_after": _load(), "command": _command(),
                  "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0), **({"pretrain": pre} if pre else {})})
        done[name] = d
        results = {"pairs": _portable(a.pairs), "bases": done}
        write_text_atomic(out, json.dumps(results, indent=1))
        print(f"{name}: " + json.dumps({k: d[k] for k in ("frame_pr", "action_probe_r2", "bc_train_mse", "bc_heldout_mse",
                                                          "knn_r2r")}) + f" ({d['seconds_total']:.0f} s)", flush=True)
    md = format_diagnostics(results["bases"])
    commands = "\n".join(f"- {n}: `{d['command']}` (load {d['load_before'][0]:.1f} -> {d['load_after'][0]:.1f})"
                         for n, d in results["bases"].items())
    write_text_atomic(out.with_suffix(".md"), f"# Base diagnostics: {results['pairs']}\n\n{md}\n\n{commands}\n")
    print(md)


def _rows_from_results(path: str) -> dict[str, dict[str, Any]]:
    """A v2 results file's own diagnostics per row: spread on its eval file, BC demo MSE of its robot rows."""
    from hralign_bench.diagnostics import closed_loop_success

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = closed_loop_success([path])
    out: dict[str, dict[str, Any]] = {r: {"bc_train_mse": v["demo_mse"]} for r, v in rows.items()}
    for r, files in (data.get("spread") or {}).items():
        e = files.get("eval", {})
        if r in out:
            out[r].update({"frame_pr": e.get("frame_rank"), "knn_r2r": e.get("knn_r2r"),
                           "action_probe_r2": e.get("action_probe_r2", e.get("probe_r2")),
                           "action_probe_r2_with_proprio": e.get("action_probe_r2_with_proprio")})
    return out


def rank(a: argparse.Namespace) -> None:
    from hralign.atomic import write_text_atomic
    from hralign.errors import HRAlignError
    from hralign_bench.diagnostics import closed_loop_success, format_ranks, rank_table

    if not a.results:
        raise HRAlignError("--results: give at least one v2 results.json")
    success = closed_loop_success(a.results, a.protocol)
    excluded = set(EXCLUDED_ROWS) | set(a.exclude or [])
    sections: list[tuple[str, dict[str, dict[str, Any]], dict[str, float]]] = []
    if a.diagnostics:
        match = dict(parse_base(m) for m in (a.match or []))
        diags: dict[str, dict[str, Any]] = {}
        for f in a.diagnostics:
            try:
                bases = json.loads(Path(f).read_text(encoding="utf-8"))["bases"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
                raise HRAlignError(f"--diagnostics {f!r}: not a base_diagnostics.py run file ({type(e).__name__})") \
                    from None
            diags.update({match.get(n, n): d for n, d in bases.items()})
        unknown = sorted(n for n in diags if n not in success)
        if unknown:
            print(f"note: no closed-loop row for {unknown} (rows: {sorted(success)}); left out", file=sys.stderr)
        sections.append(("diagnostics files, success = mean over the results files",
                         diags, {r: v["mean"] for r, v in success.items() if r not in excluded}))
    else:
        for i, f in enumerate(a.results):
            sections.append((f"{_portable(f)}: its own spread and BC demo MSE",
                             _rows_from_results(f), {r: v["per_file"][i] for r, v in success.items() if r not in excluded}))
    report: dict[str, Any] = {"protocol": a.protocol, "results": [_portable(f) for f in a.results], "sections": []}
    lines = []
    for title, diags, succ in sections:
        ranks = rank_table(diags, succ, samples=a.samples, seed=a.seed)
        keys = [k for k in ranks if ranks[k]["n"]]
        head = "| base | success | " + " | ".join(keys) + " |"
        rows = [head, "|" + "---|" * (len(keys) + 2)]
        for n in succ:
            if n in diags:
                cells = [f"{diags[n][k]:.4g}" if isinstance(diags[n].get(k), (int, float)) else "-" for k in keys]
                rows.append(f"| {n} | {succ[n]:.3f} | " + " | ".join(cells) + " |")
        lines += [f"## {title} ({a.protocol})", "", *rows, "", format_ranks(ranks), ""]
        report["sections"].append({"title": title, "success": succ, "diagnostics": {n: diags[n] for n in succ if n in diags},
                                   "ranks": ranks})
    text = "\n".join(lines)
    print(text)
    if a.out:
        write_text_atomic(a.out, json.dumps(report, indent=1))
        write_text_atomic(Path(a.out).with_suffix(".md"), f"# Rank correlation with closed-loop success\n\n`python "
                          f"{_command()[len('python '):]}`\n\n{text}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="diagnostics of bases on an eval file")
    r.add_argument("--pairs", required=True, help="evaluation pairs file (v2's eval.h5)")
    r.add_argument("--base", action="append", default=[], help="NAME=SPEC (repeatable)")
    r.add_argument("--out", required=True, help="results JSON (a .md is written beside it)")
    r.add_argument("--work", default="runs/base_diagnostics", help="pretraining runs and feature caches")
    r.add_argument("--corpus", default="", help="pairs file objective:NAME bases pretrain on")
    r.add_argument("--pretrain-steps", type=int, default=150)
    r.add_argument("--pretrain-seed", type=int, default=0)
    r.add_argument("--base-encoder", default="r3m-resnet18", help="architecture objective:NAME bases pretrain")
    r.add_argument("--bc-steps", type=int, default=1000)
    r.add_argument("--heldout", type=float, default=0.2)
    r.add_argument("--split-seed", type=int, default=0)
    r.add_argument("--bc-seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--force", action="store_true", help="redo bases already in --out")
    k = sub.add_parser("rank", help="rank correlation of diagnostics with closed-loop success")
    k.add_argument("--results", nargs="+", required=True, help="v2 results.json files (e.g. both collect seeds)")
    k.add_argument("--diagnostics", nargs="*", default=None, help="base_diagnostics.py run files")
    k.add_argument("--match", action="append", default=None, help="BASE=ROW: diagnostics base name -> results row")
    k.add_argument("--exclude", action="append", default=None, help="rows left out (proprio-only always is)")
    k.add_argument("--protocol", default="robot")
    k.add_argument("--samples", type=int, default=2000)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--out", default=None, help="write the table and correlations here (JSON, .md beside it)")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")

    from hralign.errors import HRAlignError

    try:
        if a.command == "run":
            import torch

            torch.set_num_threads(a.threads)
            run(a)
        else:
            rank(a)
    except HRAlignError as e:  # a user error: one line, exit 2 (as the CLI)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
