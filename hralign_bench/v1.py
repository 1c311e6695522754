"""``run_bench``: the MetaWorld closed-loop table (same tasks for pairs and policies) from one call.

Stages, each timed and each skipped on ``resume`` when its output exists (an interrupted benchmark
continues where it stopped):

1. collect the paired demos (``OUT/mw.h5``, with a fixed ``/split``);
2. pretrain the base encoder on the **human views only** with R3M's objective (``OUT/pretrain``),
   unless official ``weights`` are given;
3. adapt the robot branch on the training pairs with HR-Align's loss, once per adapter spec
   (``OUT/adapt/<name>``), including ``full`` (every weight trained: HR-Align's strongest baseline);
   a ``+frames`` spec adds the per-frame matching term (``hralign adapt --frame-weight``);
4. evaluate proprio-only / random-init / frozen / adapted / full fine-tune under each protocol;
5. robot->human retrieval, kNN task accuracy and per-frame error of every variant on the held-out
   and training pairs.

Writes ``results.json``, ``results.md`` and ``results.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hralign.atomic import atomic_path, write_text_atomic
from hralign.config_checks import check_int
from hralign.errors import HRAlignError
from hralign.policy import EncoderSource
from hralign.sim.collect import CollectConfig, collect, content_hash
from hralign.sim.evaluate import PROPRIO_ROW, PROTOCOLS, SimEvalConfig, evaluate_sim
from hralign_bench.alignment import alignment_metrics
from hralign_bench.stages import FULL_ROW, StageTimer, adapt_stage, adapter_row, parse_adapter_spec, stage_done


def _split_list(value: tuple[str, ...] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@dataclass
class BenchConfig:
    """Which encoders are built and compared, and under which protocols."""

    protocols: tuple[str, ...] | str = field(default=PROTOCOLS, metadata={
        "help": "Protocols, comma-separated (transfer, few-shot, robot)."})
    encoder: str = field(default="r3m-resnet18", metadata={"help": "Base encoder (the random-init row is it without weights)."})
    weights: str | None = field(default=None, metadata={
        "help": "Official checkpoint of the base: the frozen row uses it and the pretrain stage is skipped."})
    encoder_image_size: int | None = field(default=None, metadata={
        "help": "Encoder input side (default: the collected image size)."})
    pretrain_steps: int = field(default=1000, metadata={
        "help": "R3M-objective steps on the human views (the frozen base when no --weights; 0 = no frozen row)."})
    adapters: tuple[str, ...] | str = field(default=("bottleneck:late", "lora:middle", "full", "lora:middle+frames"), metadata={
        "help": "Adapters trained on the training pairs, comma-separated "
                "method[:placement][+frames][+TERM[=WEIGHT]]...; 'full' = fine-tune every weight (the strongest "
                "baseline); '+frames' adds the per-frame matching term (weight --adapt-frame-weight) to HR-Align's "
                "loss, '+mmd=10' (softdtw, sinkhorn, mmd) an `hralign adapt --terms` objective; empty = none."})
    adapt_steps: int = field(default=600, metadata={"help": "HR-Align optimiser steps per adapter."})
    adapt_lr: float = field(default=1e-3, metadata={
        "help": "Adapter learning rate ('full' uses a tenth of it: all weights move)."})
    adapt_frame_weight: float = field(default=1.0, metadata={
        "help": "Weight of the per-frame matching term of '+frames' adapters (`hralign adapt --frame-weight`)."})
    seed: int = field(default=0, metadata={"help": "Seed of pretraining and adaptation."})

    def __post_init__(self) -> None:
        self.protocols = _split_list(self.protocols)
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise HRAlignError(f"`protocols` should be a comma-separated subset of {', '.join(PROTOCOLS)} but the "
                               f"value passed is {','.join(self.protocols)!r}")
        self.adapters = _split_list(self.adapters)
        from hralign.adapters import METHODS

        for spec in self.adapters:
            method, _, frames = parse_adapter_spec(spec)
            if method not in METHODS or frames is None:
                raise HRAlignError(f"`adapters`: {spec!r} should be method[:placement][+frames][+TERM[=WEIGHT]]... "
                                   f"(TERM: an `hralign adapt --terms` name) with a method among "
                                   f"{', '.join(sorted(METHODS))}")
        if len(set(self.adapters)) != len(self.adapters):
            raise HRAlignError(f"`adapters`: {','.join(self.adapters)!r} lists an adapter twice")
        check_int(self.pretrain_steps, "pretrain_steps", 0)
        check_int(self.adapt_steps, "adapt_steps", 1)
        if not float(self.adapt_lr) > 0:
            raise HRAlignError(f"`adapt_lr` should be positive but the value passed is {self.adapt_lr!r}")
        if not float(self.adapt_frame_weight) > 0:
            raise HRAlignError(f"`adapt_frame_weight` should be positive but the value passed is {self.adapt_frame_weight!r}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise HRAlignError(f"--weights {self.weights}: no such file")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocols"], d["adapters"] = list(self.protocols), list(self.adapters)
        return d


def pretrain_stage(out: Path, pairs: Path, bench: BenchConfig, image_size: int, progress: bool) -> Path:
    """Pretrain (or reuse) the base on the human views of ``pairs`` with R3M's objective into ``out/pretrain``."""
    from hralign.pretrain import PretrainConfig, pretrain

    target = out / "pretrain"
    if not stage_done(target):
        cfg = PretrainConfig(pairs=str(pairs), out=str(target), domain="human", encoder=bench.encoder,
                             image_size=image_size, steps=bench.pretrain_steps, seed=bench.seed,
                             resume=(target / "run.json").is_file(), eval_every=0,
                             checkpoint_every=max(1, bench.pretrain_steps // 4))
        pretrain(cfg, progress=progress, log=lambda _msg: None)
    return target


def run_bench(out: str | Path, collect_cfg: CollectConfig, bench: BenchConfig, eval_cfg: SimEvalConfig,
              resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Collect, pretrain, adapt, evaluate every variant under every protocol, write the table."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise HRAlignError(f"--out {out}: exists and is not empty; pass --resume to continue")
    out.mkdir(parents=True, exist_ok=True)
    timed = StageTimer(out / "timings.json", resume)
    timings = timed.timings

    pairs = out / "mw.h5"
    if pairs.is_file() and resume:
        summary = timed("collect", lambda: {"content_sha256": content_hash(pairs), "reused": True})
    else:
        summary = timed("collect", collect, pairs, collect_cfg, True, progress)
    image_size = int(bench.encoder_image_size or collect_cfg.image_size)

    variants: dict[str, EncoderSource | None] = {
        PROPRIO_ROW: None, "random-init": EncoderSource(bench.encoder, image_size=image_size)}
    base, weights = bench.encoder, bench.weights
    if weights is None and bench.pretrain_steps > 0:
        base = str(timed("pretrain (human views)", pretrain_stage, out, pairs, bench, image_size, progress))
    if weights is not None or bench.pretrain_steps > 0:
        variants["frozen"] = EncoderSource(base, weights=weights, image_size=image_size)
        for spec in bench.adapters:
            adapter = timed(f"adapt {spec}", adapt_stage, out, pairs, spec, base, weights, image_size, bench.adapt_steps,
                            bench.adapt_lr, bench.adapt_frame_weight, bench.seed, progress)
            variants[adapter_row(spec)] = EncoderSource(base, weights=weights, adapter=str(adapter))

    tables: dict[str, Any] = {}
    for protocol in bench.protocols:
        cfg = SimEvalConfig(**{**eval_cfg.to_dict(), "protocol": protocol})
        tables[protocol] = timed(f"eval {protocol}", evaluate_sim, pairs, out / "eval" / protocol, variants, cfg,
                                 resume, progress)
    alignment = timed("alignment metrics", lambda: {
        v: {subset: alignment_metrics(str(pairs), src, subset=subset) for subset in ("val", "train")}
        for v, src in variants.items() if src is not None})
    results = {"alignment": alignment, "bench": bench.to_dict(),
               "collect": {**collect_cfg.to_dict(), **{k: v for k, v in summary.items() if k != "out"}},
               "eval": eval_cfg.to_dict(), "timings_s": timings,
               "table": {p: {v: {k: row[k] for k in ("mean", "std", "sem", "per_task", "per_seed")}
                             for v, row in r["variants"].items()} for p, r in tables.items()}}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", format_table(results))
    plot_table(results, out / "results.png")
    return results


def _cell(row: dict[str, Any]) -> str:
    return f"{row['mean']:.2f} +- {row['std']:.2f} ({row['sem']:.2f})"


def format_table(results: dict[str, Any]) -> str:
    """Markdown: success per variant and protocol (mean +- std over seeds, sem), deltas vs frozen, alignment."""
    protocols = list(results["table"])
    variants = list(next(iter(results["table"].values())))
    ev, col = results["eval"], results["collect"]
    n = len(col["tasks"]) * ev["rollouts"]
    lines = ["# MetaWorld closed-loop success", "",
             (f"tasks {', '.join(col['tasks'])}; {col['episodes']} demos/task at {col['image_size']} px "
              f"(camera {col['camera']}, human view {col.get('human_camera') or 'same camera'}); "
              f"{ev['rollouts']} rollouts/task x {ev['seeds']} training seeds ({n} rollouts per seed); "
              "mean +- std over seeds (standard error of the mean)"), "",
             "| variant | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(_cell(results["table"][p][v]) for p in protocols) + " |")
    if "frozen" in variants:
        lines += ["", "Difference to frozen (mean over seeds; std of the per-seed differences, same goals and seeds):", "",
                  "| variant | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
        for v in variants:
            if v in ("frozen", PROPRIO_ROW):
                continue
            cells = []
            for p in protocols:
                d = paired_difference(results["table"][p][v], results["table"][p]["frozen"])
                cells.append(f"{d['mean']:+.2f} +- {d['std']:.2f}")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "Clip-level alignment (robot->human pair retrieval; kNN task accuracy, k=5; held-out pairs / "
              "training pairs of the adapters; frame error = sum ||robot_t - human_t||^2 / sum ||human_t - mean||^2 "
              "over frame-aligned frames, what a policy trained on human views sees):", "",
              "| variant | r->h top1 | r->h top5 | kNN h->h | kNN r->r | kNN r->h | frame error |",
              "|---|---|---|---|---|---|---|"]
    for v, m in results.get("alignment", {}).items():
        va, tr = m["val"], m["train"]
        cells = [f"{va[k]:.2f} / {tr[k]:.2f}" if k in va else "-"
                 for k in ("r2h_top1", "r2h_top5", "knn_h2h", "knn_r2r", "knn_r2h", "frame_error")]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if results.get("alignment"):
        m = next(iter(results["alignment"].values()))
        lines.append(f"\nheld-out pairs {m['val']['pairs']}, training pairs {m['train']['pairs']}; chance: top1 "
                     f"{1 / max(1, m['val']['pairs']):.2f} / {1 / max(1, m['train']['pairs']):.2f}, kNN {m['val']['chance']:.2f}")
    lines += ["", "wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in results["timings_s"].items())]
    return "\n".join(lines) + "\n"


def paired_difference(row: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    """Per-seed success differences (both rows were trained with the same seeds and rolled out on the same goals)."""
    import numpy as np

    a = {r["seed"]: r["success"] for r in row["per_seed"]}
    b = {r["seed"]: r["success"] for r in ref["per_seed"]}
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], np.float64)
    std = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"mean": float(d.mean()) if len(d) else float("nan"), "std": std, "seeds": int(len(d))}


def plot_table(results: dict[str, Any], path: Path) -> None:
    """Grouped bars (protocol groups, one bar per variant, std as error bar)."""
    import numpy as np
    from matplotlib.figure import Figure  # object-oriented API: no pyplot, no backend switch

    protocols = list(results["table"])
    variants = list(next(iter(results["table"].values())))
    width = 0.8 / len(variants)
    fig = Figure(figsize=(2.4 + 1.8 * len(protocols), 3.4))
    ax = fig.subplots()
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


__all__ = ["FULL_ROW", "BenchConfig", "adapter_row", "format_table", "paired_difference", "parse_adapter_spec",
           "plot_table", "pretrain_stage", "run_bench"]
