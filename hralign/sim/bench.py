"""``run_bench``: the MetaWorld table of issue 10 from one call - collect, then every variant under
every protocol, written as ``results.json``, ``results.md`` and a bar chart.

This first slice takes the encoders to compare as given (a frozen base, adapter directories made by
``hralign adapt`` on the benchmark's own pairs file); the pretrain and adapt stages of the full
``hralign bench metaworld`` are not run here yet (see docs/sim.md). Each stage is skipped on
``resume`` when its output exists, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hralign.atomic import atomic_path, write_text_atomic
from hralign.errors import HRAlignError
from hralign.policy import EncoderSource
from hralign.sim.alignment import alignment_metrics
from hralign.sim.collect import CollectConfig, collect, content_hash
from hralign.sim.evaluate import PROPRIO_ROW, PROTOCOLS, SimEvalConfig, evaluate_sim


@dataclass
class BenchConfig:
    """Which protocols and encoder variants the table holds."""

    protocols: tuple[str, ...] | str = field(default=PROTOCOLS, metadata={
        "help": "Protocols, comma-separated (transfer, few-shot, robot)."})
    encoder: str = field(default="r3m-resnet18", metadata={"help": "Base encoder (random-init row: no weights)."})
    weights: str | None = field(default=None, metadata={"help": "Official checkpoint of the base (adds a 'frozen' row)."})
    encoder_image_size: int | None = field(default=None, metadata={"help": "Encoder input side override."})
    adapters: tuple[str, ...] = field(default=(), metadata={"help": "Adapter dirs (one 'adapted' row each, named "
                                                                    "by the dir)."})

    def __post_init__(self) -> None:
        if isinstance(self.protocols, str):
            self.protocols = tuple(p.strip() for p in self.protocols.split(",") if p.strip())
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise HRAlignError(f"`protocols` should be a comma-separated subset of {', '.join(PROTOCOLS)} but the "
                               f"value passed is {','.join(self.protocols)!r}")
        for a in self.adapters:
            if not (Path(a) / "hralign.json").is_file():
                raise HRAlignError(f"--adapter {a}: no hralign.json; expected a dir written by `hralign adapt`")

    def variants(self) -> dict[str, EncoderSource | None]:
        v: dict[str, EncoderSource | None] = {PROPRIO_ROW: None,
                                              "random-init": EncoderSource(self.encoder, image_size=self.encoder_image_size)}
        if self.weights is not None:
            v["frozen"] = EncoderSource(self.encoder, weights=self.weights, image_size=self.encoder_image_size)
        for a in self.adapters:
            v[f"adapted:{Path(a).name}"] = EncoderSource(self.encoder, weights=self.weights, adapter=str(a),
                                                         image_size=self.encoder_image_size)
        return v


def run_bench(out: str | Path, collect_cfg: CollectConfig, bench: BenchConfig, eval_cfg: SimEvalConfig,
              resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Collect (or reuse ``out/mw.h5`` on resume), evaluate every variant under every protocol, write the table."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise HRAlignError(f"--out {out}: exists and is not empty; pass --resume to continue")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    pairs = out / "mw.h5"
    t = time.perf_counter()
    if pairs.is_file() and resume:
        summary = {"content_sha256": content_hash(pairs), "reused": True}
    else:
        summary = collect(pairs, collect_cfg, overwrite=True, progress=progress)
    timings["collect"] = time.perf_counter() - t
    tables: dict[str, Any] = {}
    for protocol in bench.protocols:
        t = time.perf_counter()
        cfg = SimEvalConfig(**{**eval_cfg.to_dict(), "protocol": protocol})
        tables[protocol] = evaluate_sim(pairs, out / "eval" / protocol, bench.variants(), cfg, resume=resume,
                                        progress=progress)
        timings[f"eval {protocol}"] = time.perf_counter() - t
    t = time.perf_counter()
    alignment = {v: alignment_metrics(str(pairs), src) for v, src in bench.variants().items() if src is not None}
    timings["alignment metrics"] = time.perf_counter() - t
    results = {"alignment": alignment, "collect": {**collect_cfg.to_dict(), **{k: v for k, v in summary.items() if k != "out"}},
               "eval": eval_cfg.to_dict(), "timings_s": timings,
               "table": {p: {v: {k: row[k] for k in ("mean", "std", "sem", "per_task")}
                             for v, row in r["variants"].items()} for p, r in tables.items()}}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", format_table(results))
    plot_table(results, out / "results.png")
    return results


def format_table(results: dict[str, Any]) -> str:
    """Markdown: one row per variant, one column per protocol (mean +- std over seeds, sem in brackets)."""
    protocols = list(results["table"])
    variants = list(next(iter(results["table"].values())))
    ev = results["eval"]
    lines = ["# MetaWorld closed-loop success", "",
             (f"tasks {', '.join(results['collect']['tasks'])}; {results['collect']['episodes']} demos/task at "
              f"{results['collect']['image_size']} px; {ev['rollouts']} rollouts/task x {ev['seeds']} seeds; "
              "mean +- std over seeds (standard error)"), "",
             "| variant | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for v in variants:
        cells = [f"{results['table'][p][v]['mean']:.2f} +- {results['table'][p][v]['std']:.2f} "
                 f"({results['table'][p][v]['sem']:.2f})" for p in protocols]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "Clip-level alignment on the benchmark pairs (robot->human pair retrieval; kNN task accuracy):", "",
              "| variant | r->h top1 | r->h top5 | kNN h->h | kNN r->r | kNN r->h |", "|---|---|---|---|---|---|"]
    for v, m in results.get("alignment", {}).items():
        lines.append(f"| {v} | {m['r2h_top1']:.2f} | {m['r2h_top5']:.2f} | {m['knn_h2h']:.2f} | {m['knn_r2r']:.2f} | "
                     f"{m['knn_r2h']:.2f} |")
    lines += ["", "wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in results["timings_s"].items())]
    return "\n".join(lines) + "\n"


def plot_table(results: dict[str, Any], path: Path) -> None:
    """Grouped bars (protocol groups, one bar per variant, std as error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    protocols = list(results["table"])
    variants = list(next(iter(results["table"].values())))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(protocols), 3.2))
    for i, v in enumerate(variants):
        means = [results["table"][p][v]["mean"] for p in protocols]
        stds = [results["table"][p][v]["std"] for p in protocols]
        ax.bar(np.arange(len(protocols)) + i * width, means, width, yerr=stds, label=v, capsize=2)
    ax.set_xticks(np.arange(len(protocols)) + 0.4 - width / 2, protocols)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
