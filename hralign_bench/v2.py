"""``run_bench_v2``: the MetaWorld v2 setting: corpus-pretrained base, adapters trained on other tasks,
policies evaluated on held-out tasks, success with paired-bootstrap confidence intervals.

Stages (each timed into ``OUT/timings.json``; ``resume`` reuses every finished one, down to single
(protocol, row, seed) results):

1. collect the human-video corpus ``OUT/corpus.h5`` (pretraining tasks, human view only, the look
   drawn per episode), the pairs ``OUT/pairs.h5`` (pair tasks) and the demos ``OUT/eval.h5``
   (evaluation tasks, both views);
2. pretrain the base on the corpus with R3M's objective (``OUT/pretrain``; its held-out TCN accuracy
   and kNN every ``pretrain_eval_every`` steps land in ``OUT/pretrain/metrics.jsonl``);
3. optionally a base pretrained on the evaluation tasks' own human views (the same-tasks setting of
   :mod:`hralign_bench.v1`), then the spread diagnostic ``OUT/spread.json``: robot-clip feature
   spread and robot->robot kNN task accuracy of random-init, the corpus base and that base on the
   robot clips of ``eval.h5`` and ``pairs.h5`` (is the corpus base degenerate on robot views?), with
   the action probe (:func:`hralign.metrics.action_probe_r2` through
   :func:`hralign_bench.alignment.robot_spread`: do the frozen robot features predict the expert's
   action, and how far above the proprio-only floor?) and the frames' effective number of directions
   (:func:`hralign.metrics.participation_ratio`: what BC's BatchNorm input sees);
4. adapt the robot branch on ``pairs.h5`` once per adapter spec (``OUT/adapt/<name>``);
5. the latent chain's LAM on the corpus (``OUT/lam``, human view only), its labels of
   ``eval.h5`` (``OUT/lam_labels.h5``) and its measures there (``OUT/lam_measures.json``,
   :mod:`hralign.lam.measures`: action probe with the proprio floor, reconstruction vs copy and
   shuffled latents, perplexity, cross-embodiment kNN, code NMI), unless ``lam_steps`` is 0 (``lam``
   gives a LAM trained elsewhere, e.g. a variant of docs/lam.md's probe table, instead of training one);
6. evaluate every row on the evaluation tasks under each protocol, (protocol, row) jobs spread over
   ``workers`` processes: proprio-only, random-init, frozen, adapters, full fine-tune, under
   ``robot`` / ``few-shot`` the latent chain and the same latent policy without latent pretraining
   (:mod:`hralign.sim.latent`) and, under ``transfer``, the human-view oracle (BC on human-view demos
   rolled out in the human view);
7. alignment on ``eval.h5``'s held-out pairs (tasks no adapter saw): retrieval, kNN, frame error,
   robot-clip spread.

Writes ``results.json`` and ``results.md`` (success with 95% CIs, paired differences to frozen and
latent chain minus its control, the rollouts a 10-point difference needs, stage times, rollouts/s,
peak RSS, the spread diagnostic).
"""

from __future__ import annotations

import json
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from hralign.atomic import write_text_atomic
from hralign.config_checks import check_choice, check_ints
from hralign.errors import HRAlignError
from hralign.policy import EncoderSource
from hralign.sim.collect import CollectConfig, collect
from hralign.sim.evaluate import PROPRIO_ROW, PROTOCOLS, SimEvalConfig, evaluate_sim
from hralign.sim.latent import LAM_OPTIONS, SimLatentConfig
from hralign.sim.sequential import SequentialConfig, comparisons_against, run_rounds
from hralign.sim.stats import discordant_share, outcome_matrix, paired_bootstrap, rollouts_for_difference
from hralign_bench.stages import StageTimer, adapt_stage, adapter_row, stage_done
from hralign_bench.tasksets import TaskSets, changes
from hralign_bench.v1 import BenchConfig

ORACLE_ROW = "human-view oracle"
EVAL_VIEWS_BASE_ROW = "base pretrained on eval-task human views"
# row names of results files written before the rows were renamed -> today's names (read, never written)
ROW_ALIASES = {"old base (v1: eval tasks' human views)": EVAL_VIEWS_BASE_ROW}
LATENT_ROW = "latent chain"
LATENT_CONTROL_ROW = "latent policy without latent pretraining"
LATENT_PROTOCOLS = ("robot", "few-shot")  # where the action head trains on robot demos (LAPA's recipe)


@dataclass
class V2Config:
    """Sizes of the v2 benchmark (the quick and full presets are ``PRESETS``)."""

    corpus_episodes: int = field(default=20, metadata={"help": "Expert episodes per pretraining task (human view)."})
    pair_episodes: int = field(default=20, metadata={"help": "Paired episodes per pair task."})
    eval_episodes: int = field(default=20, metadata={"help": "Demos per evaluation task (both views)."})
    image_size: int = field(default=96, metadata={"help": "Render and encoder size in pixels."})
    collect_seed: int = field(default=0, metadata={"help": "Seed of every collect stage (goals, noise, looks)."})
    pretrain_steps: int = field(default=1500, metadata={"help": "Pretraining steps of the base on the corpus."})
    pretrain_objective: str = field(default="r3m", metadata={
        "help": "Objective the base is pretrained with on the corpus (hralign pretrain --objective)."})
    base_encoder: str = field(default="r3m-resnet18", metadata={
        "help": "Architecture of the base and of the random-init row (mae needs a ViT, e.g. "
                "timm:vit_tiny_patch16_224)."})
    base: str = field(default="", metadata={
        "help": "A pretrained encoder directory (hralign pretrain's --out) used as the base instead of "
                "pretraining one on the corpus (its hralign.json says how it was made)."})
    pretrain_eval_every: int = field(default=250, metadata={
        "help": "Held-out corpus evaluation every N pretraining steps (the curve the steps are chosen on)."})
    old_base: bool = field(default=False, metadata={
        "help": "Also pretrain a base on the evaluation tasks' own human views (same steps) for the spread / "
                "kNN comparison."})
    adapters: tuple[str, ...] | str = field(default=("lora:middle", "lora:middle+frames", "full"), metadata={
        "help": "Adapter specs method[:placement][+frames][+TERM[=WEIGHT]]... trained on the pair tasks (TERM: an `hralign adapt --terms` objective, e.g. lora:middle+frames+mmd=10)."})
    adapt_steps: int = field(default=400, metadata={"help": "HR-Align optimiser steps per adapter."})
    lam_steps: int = field(default=1000, metadata={
        "help": "Steps of the latent chain's LAM on the corpus (conv IDM, human view; 0 = no latent-chain rows)."})
    lam: str = field(default="", metadata={
        "help": "A LAM run directory (hralign lam train's --out) that labels the latent chain's clips instead of "
                "training one on the corpus, e.g. the best variant by action probe (docs/lam.md)."})
    latent_steps: int = field(default=1000, metadata={
        "help": "Latent-token steps of the latent policy on the LAM-labelled human-view clips of the evaluation tasks."})
    workers: int = field(default=2, metadata={"help": "Processes the (protocol, row) evaluation jobs run in."})
    bootstrap: int = field(default=2000, metadata={"help": "Bootstrap resamples of goals and seeds."})

    def __post_init__(self) -> None:
        from hralign.pretrain.objectives import OBJECTIVES  # torch: only when a benchmark is configured

        BenchConfig(adapters=self.adapters)  # the same adapter-spec checks as the same-tasks benchmark
        if isinstance(self.adapters, str):
            self.adapters = tuple(a.strip() for a in self.adapters.split(",") if a.strip())
        check_ints(self, ("corpus_episodes", "pair_episodes", "eval_episodes", "image_size", "pretrain_steps",
                          "pretrain_eval_every", "adapt_steps", "workers", "bootstrap"), 1)
        check_ints(self, ("lam_steps", "latent_steps"), 0)
        check_choice(self.pretrain_objective, "pretrain_objective", OBJECTIVES)
        if self.pair_episodes < 2 or self.eval_episodes < 2:
            raise HRAlignError("`pair_episodes` and `eval_episodes` should be >= 2 (training and held-out pairs)")
        if self.base and not (Path(self.base) / "hralign.json").is_file():
            raise HRAlignError(f"`base` {self.base}: no hralign.json there; expected an encoder directory written by "
                               "hralign pretrain (its --out)")
        if self.lam:
            from hralign.lam.io import META_FILE

            if not (Path(self.lam) / META_FILE).is_file():
                raise HRAlignError(f"`lam` {self.lam}: no {META_FILE} there; expected a LAM run directory written by "
                                   "hralign lam train (its --out)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapters"] = list(self.adapters)
        return d


# quick: sized for < 30 min on 2 idle cores (16.5 min measured: docs/sim.md); full: the committed v2 table.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {"v2": dict(corpus_episodes=3, pair_episodes=6, eval_episodes=20, pretrain_steps=100,
                         pretrain_eval_every=25, adapters=("lora:middle+frames",), adapt_steps=150,
                         lam_steps=300, latent_steps=300),
              "eval": dict(rollouts=6, seeds=2, steps=1000, max_steps=100, envs=3),
              "protocols": ("robot", "transfer")},
    "full": {"v2": dict(corpus_episodes=20, pair_episodes=20, eval_episodes=20, pretrain_steps=1500,
                        pretrain_eval_every=250, old_base=True,
                        adapters=("bottleneck:late", "lora:middle", "lora:middle+frames", "full"), adapt_steps=400,
                        lam_steps=1500, latent_steps=1000),
             "eval": dict(rollouts=60, seeds=4, steps=1000, max_steps=120, envs=10),
             "protocols": ("robot", "few-shot", "transfer")},  # HR-Align's protocol first: its rows run first
}


def eval_job(pairs: str, out: str, vname: str, source: EncoderSource | None, cfg: dict[str, Any],
             human_view: bool, latent: dict[str, Any] | None = None, upto: int | None = None) -> dict[str, Any]:
    """One (protocol, row) evaluation, run in a worker process (its own envs and GL contexts).

    ``cfg`` is a :class:`SimEvalConfig` as a dict (picklable for spawned workers), ``human_view``
    rolls the row out in the human view (the oracle), ``latent`` a :class:`SimLatentConfig` dict for
    the latent rows, ``upto`` the goals per task of a sequential round. Returns the row's result
    and this process's peak RSS in MB.
    """
    res = evaluate_sim(pairs, out, {vname: source}, SimEvalConfig(**cfg), resume=True, progress=False,
                       human_view=(vname,) if human_view else (),
                       latent=SimLatentConfig(**latent) if latent is not None else None, upto=upto)
    row = res["variants"][vname]
    return {"row": row, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def run_eval_jobs(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """Run evaluation jobs in ``workers`` spawned processes (1: in this process with torch's own threads,
    the 'before' of the speed-up: one batched encoder call per step either way).

    Spawned, not forked: each MetaWorld env owns an EGL context that must not be shared with a parent.
    """
    if workers == 1:
        return [eval_job(**j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        futures = [pool.submit(eval_job, **j) for j in jobs]
        return [f.result() for f in futures]


def _evaluate(jobs: list[dict[str, Any]], workers: int, eval_cfg: SimEvalConfig, protocols: tuple[str, ...],
              eval_tasks: tuple[str, ...], sequential: SequentialConfig | None) -> tuple[dict[str, dict[str, Any]], int, float, dict | None]:
    """Run the evaluation jobs (at once, or in rounds with ``sequential``): (table protocol -> row -> result,
    rollouts run in this call, the largest worker's peak RSS in MB, the sequential decisions or None)."""
    table: dict[str, dict[str, Any]] = {p: {} for p in protocols}
    by_key = {(j["_protocol"], j["vname"]): {k: v for k, v in j.items() if k != "_protocol"} for j in jobs}
    ran, rss = [0], [0.0]

    by_seeds = sequential is not None and sequential.round_by == "seeds"

    def run(keys: list, upto: int | None) -> None:
        jobs = [{**by_key[k], "cfg": {**by_key[k]["cfg"], "seeds": upto}, "upto": None} if by_seeds
                else {**by_key[k], "upto": upto} for k in keys]  # rounds add seeds, or goals
        done = run_eval_jobs(jobs, workers)
        for k, r in zip(keys, done):
            table[k[0]][k[1]] = r["row"]
            ran[0] += r["row"]["rollouts_run"]
            rss[0] = max(rss[0], r["rss_mb"])

    if sequential is None:
        run(list(by_key), None)
        return table, ran[0], rss[0], None
    comparisons = []
    for p in protocols:
        rows = [v for q, v in by_key if q == p]
        extra = [(LATENT_ROW, LATENT_CONTROL_ROW)] if LATENT_ROW in rows and LATENT_CONTROL_ROW in rows else []
        comparisons += [((p, a), (p, b)) for a, b in comparisons_against(rows, "frozen", extra)]

    def run_round(keys: list, upto: int) -> dict:
        run(keys, upto)
        return {k: outcome_matrix(table[k[0]][k[1]], eval_tasks) for k in keys}

    seq = run_rounds(run_round, comparisons, sequential, sequential.maximum(eval_cfg.rollouts, eval_cfg.seeds)[0])
    seq["comparisons"] = [{**c, "protocol": c["row"][0], "row": c["row"][1], "reference": c["reference"][1]}
                          for c in seq["comparisons"]]
    seq["rollouts"] = [{"protocol": k[0], "row": k[1], "rollouts": n} for k, n in seq["rollouts"].items()]
    return table, ran[0], rss[0], seq


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace(":", "-")


def _check_resume(out: Path, tasks: TaskSets, resume: bool) -> None:
    f = out / "tasksets.json"
    if out.exists() and any(out.iterdir()) and not resume:
        raise HRAlignError(f"--out {out}: exists and is not empty; pass --resume to continue")
    if resume and f.is_file():
        old = json.loads(f.read_text(encoding="utf-8"))
        diff = changes(old, tasks.to_dict())
        if diff:
            raise HRAlignError(f"--resume {out}: the task sets changed since the run started ({'; '.join(diff)}); "
                               "use a new --out or the old task sets")
    out.mkdir(parents=True, exist_ok=True)
    if not f.is_file():
        write_text_atomic(f, json.dumps(tasks.to_dict(), indent=2))


def run_bench_v2(out: str | Path, tasks: TaskSets, cfg: V2Config, eval_cfg: SimEvalConfig,
                 protocols: tuple[str, ...] = PROTOCOLS, resume: bool = False, progress: bool = True,
                 sequential: SequentialConfig | None = None) -> dict[str, Any]:
    """Every stage of the v2 benchmark; returns (and writes) the results.

    ``sequential``: evaluate in rounds, each row stopped against ``frozen`` (and the latent chain against its
    control) by :mod:`hralign.sim.sequential`'s rule; ``results["sequential"]`` holds the decisions."""
    from hralign_bench.alignment import alignment_metrics

    out = Path(out)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise HRAlignError(f"--protocols: {','.join(protocols)!r}; expected a subset of {', '.join(PROTOCOLS)}")
    tasks.check_known()
    if sequential is not None:
        sequential.looks(*sequential.maximum(eval_cfg.rollouts, eval_cfg.seeds))  # before any stage runs
    _check_resume(out, tasks, resume)
    timed = StageTimer(out / "timings.json", resume=True)  # finished stages are reused whatever the flag
    timings = timed.timings

    size = cfg.image_size
    files = {"corpus": (out / "corpus.h5", CollectConfig(tasks=tasks.pretrain, episodes=cfg.corpus_episodes,
                                                         image_size=size, seed=cfg.collect_seed, views="human",
                                                         vary_look=True)),
             "pairs": (out / "pairs.h5", CollectConfig(tasks=tasks.pair, episodes=cfg.pair_episodes, image_size=size,
                                                       seed=cfg.collect_seed)),
             "eval": (out / "eval.h5", CollectConfig(tasks=tasks.eval, episodes=cfg.eval_episodes, image_size=size,
                                                     seed=cfg.collect_seed))}
    collected: dict[str, Any] = {}
    for key, (path, ccfg) in files.items():
        if not path.is_file():  # the writer renames into place at the end: a present file is complete
            s = timed(f"collect {key}", collect, path, ccfg, False, progress)
            collected[key] = {k: v for k, v in s.items() if k != "out"}

    base = str(timed("pretrain (corpus)", base_stage, out, files["corpus"][0], cfg, progress))
    bench = BenchConfig(adapters=cfg.adapters, adapt_steps=cfg.adapt_steps, pretrain_steps=cfg.pretrain_steps,
                        seed=0)
    variants: dict[str, EncoderSource | None] = {
        PROPRIO_ROW: None, "random-init": EncoderSource(cfg.base_encoder, image_size=size),
        "frozen": EncoderSource(base, image_size=size)}
    # the spread right after the base (cheap next to the rollouts; a partial run answers it)
    spread_sources = {"random-init": variants["random-init"], "frozen": variants["frozen"]}
    if cfg.old_base:
        own = timed("pretrain (eval-task human views)", pretrain_stage, out / "pretrain_old", files["eval"][0],
                    cfg, progress)
        spread_sources[EVAL_VIEWS_BASE_ROW] = EncoderSource(str(own), image_size=size)
    spread = timed("spread (robot clips)", spread_stage, out / "spread.json",
                   {"eval": str(files["eval"][0]), "pairs": str(files["pairs"][0])}, spread_sources)
    for spec in cfg.adapters:
        adapter = timed(f"adapt {spec}", adapt_stage, out, files["pairs"][0], spec, base, None, size, bench.adapt_steps,
                        bench.adapt_lr, bench.adapt_frame_weight, bench.seed, progress)
        variants[adapter_row(spec)] = EncoderSource(base, adapter=str(adapter))
    labels, lam_eval = None, None
    if cfg.lam_steps:
        record_choice(out / "lam_choice.json", {"lam": str(Path(cfg.lam).resolve()) if cfg.lam else ""}, "the LAM")
        lam = timed("lam (corpus)", lam_stage, out / "lam", files["corpus"][0], cfg, progress) if not cfg.lam \
            else Path(cfg.lam)
        labels = str(timed("lam labels (eval)", lam_labels_stage, out / "lam_labels.h5", files["eval"][0], lam, progress))
        lam_eval = timed("lam measures (eval)", lam_measures_stage, out / "lam_measures.json", files["eval"][0],
                         Path(labels), lam)


    jobs = []
    for protocol in protocols:
        rows: dict[str, tuple[EncoderSource | None, dict[str, Any] | None]] = {
            v: (src, None) for v, src in variants.items()}
        if protocol == "transfer":
            rows[ORACLE_ROW] = (variants["frozen"], None)
        if labels is not None and protocol in LATENT_PROTOCOLS:
            rows[LATENT_ROW] = (variants["frozen"], {"labels": labels, "latent_steps": cfg.latent_steps})
            rows[LATENT_CONTROL_ROW] = (variants["frozen"], {"labels": labels, "latent_steps": 0})
        pcfg = {**eval_cfg.to_dict(), "protocol": protocol}
        for vname, (src, latent) in rows.items():
            jobs.append({"pairs": str(files["eval"][0]), "out": str(out / "eval" / protocol / _slug(vname)),
                         "vname": vname, "source": src, "cfg": pcfg, "human_view": vname == ORACLE_ROW,
                         "latent": latent, "_protocol": protocol})
    jobs.sort(key=lambda j: j["source"] is None)  # image rows first: the long jobs start early
    t_eval = time.perf_counter()
    table, ran, rss_workers, seq = _evaluate(jobs, cfg.workers, eval_cfg, protocols, tasks.eval,
                                            sequential)
    eval_s = time.perf_counter() - t_eval
    if "eval" not in timings and ran:
        timed.record({"eval": eval_s, "eval rollouts/s": ran / max(eval_s, 1e-9), "eval workers": cfg.workers,
                      "eval worker_s": sum(r["worker_s"] for rows in table.values() for r in rows.values())})
    rss = {"main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "workers_max_mb": rss_workers}

    results = {"tasks": tasks.to_dict(), "v2": cfg.to_dict(), "eval": eval_cfg.to_dict(), "protocols": list(protocols),
               "collect": collected, "pretrain_curve": _pretrain_curve(Path(base)), "timings_s": timings,
               "peak_rss": rss, "spread": spread, "lam": _lam_summary(lam) if labels is not None else None,
               "lam_eval": lam_eval,
               "table": table, "stats": _statistics(table, tasks.eval, cfg.bootstrap),
               **({"sequential": seq} if seq is not None else {})}
    _write(out, results)

    def align() -> dict[str, Any]:
        return {v: alignment_metrics(str(files["eval"][0]), src, subset="val")
                for v, src in variants.items() if src is not None}
    results["alignment"] = timed("alignment (eval tasks)", align)
    _write(out, results)
    return results


def lam_stage(target: Path, corpus: Path, cfg: V2Config, progress: bool) -> Path:
    """The latent chain's LAM on the corpus (``hralign lam train``'s function; resumable)."""
    from hralign.lam.io import META_FILE
    from hralign.lam.train import LAMTrainConfig, config_for_pairs, train_lam

    if not (target / META_FILE).is_file():
        every = max(1, cfg.lam_steps // 4)
        tcfg = LAMTrainConfig(pairs=str(corpus), out=str(target), domain="human", steps=cfg.lam_steps, seed=0,
                              eval_every=0, checkpoint_every=every, log_every=every, eval_pairs=256,
                              resume=(target / "run.json").is_file())
        train_lam(config_for_pairs(str(corpus), "human", **LAM_OPTIONS), tcfg, progress=progress)
    return target


def lam_labels_stage(target: Path, pairs: Path, lam: Path, progress: bool) -> Path:
    """LAM labels of every frame pair of the evaluation file (``hralign lam label``; written atomically)."""
    from hralign.lam.labels import label_pairs

    if not target.is_file():
        label_pairs(pairs, lam, target, progress=progress)
    return target


def lam_measures_stage(target: Path, pairs: Path, labels: Path, lam: Path) -> dict[str, Any]:
    """:func:`hralign.lam.measures.measure_lam` of the LAM on the evaluation file (tasks it never saw),
    cached in ``target``: what `hralign lam eval --lam` and benchmarks/lam_variants.py report."""
    from hralign.lam.measures import measure_lam

    if target.is_file():
        return json.loads(target.read_text(encoding="utf-8"))
    res = measure_lam(labels, pairs, lam, eval_pairs=256)
    write_text_atomic(target, json.dumps(res, indent=2))
    return res


def _lam_summary(run: Path) -> dict[str, Any]:
    """The LAM's final held-out figures (reconstruction vs copying x_t, perplexity of its codes)."""
    from hralign.lam.io import read_lam_meta

    final = read_lam_meta(run).get("train", {}).get("final_eval", {})
    return {k: v for k, v in final.items() if isinstance(v, (int, float))}


def spread_stage(target: Path, files: dict[str, str], sources: dict[str, EncoderSource]) -> dict[str, Any]:
    """Robot-clip spread, robot->robot kNN and action probe per encoder (``sources``: row -> encoder) and
    file (``files``: name -> pairs path), each encoder's figures cached in ``target`` as they finish (a
    resume computes only the missing ones, e.g. a base added later, or figures a cache lacks)."""
    from hralign_bench.alignment import SPREAD_KEYS, robot_spread

    res = rename_rows(json.loads(target.read_text(encoding="utf-8"))) if target.is_file() else {}
    for v, src in sources.items():
        if v not in res or any(set(SPREAD_KEYS) - set(m) for m in res[v].values()):
            res[v] = {name: robot_spread(path, src) for name, path in files.items()}
            write_text_atomic(target, json.dumps(res, indent=2))
    return {v: res[v] for v in sources}


def base_stage(out: Path, corpus: Path, cfg: V2Config, progress: bool) -> Path:
    """The base encoder directory: ``cfg.base`` as given, else one pretrained on the corpus
    (:func:`pretrain_stage` into ``out/pretrain``). The choice is written to ``out/base.json`` and a
    resumed run that would change it is refused: its finished rows were built on the first base."""
    choice = {"base": str(Path(cfg.base).resolve()) if cfg.base else "", "objective": cfg.pretrain_objective,
              "encoder": cfg.base_encoder}
    record_choice(out / "base.json", choice, "the base")
    return Path(cfg.base) if cfg.base else pretrain_stage(out / "pretrain", corpus, cfg, progress)


def record_choice(f: Path, choice: dict[str, Any], what: str) -> None:
    """Write ``choice`` to ``f`` on a new run; on a resumed one, refuse a different choice (the rows
    finished so far were built on the first one)."""
    if f.is_file():
        old = json.loads(f.read_text(encoding="utf-8"))
        if old != choice:
            raise HRAlignError(f"--resume {f.parent}: {what} changed since the run started (was {old}, now {choice}); "
                               "start a new --out")
    else:
        write_text_atomic(f, json.dumps(choice, indent=2))


def pretrain_stage(target: Path, pairs: Path, cfg: V2Config, progress: bool) -> Path:
    """Pretrain (or reuse) a ``cfg.base_encoder`` base on the human views of ``pairs`` with
    ``cfg.pretrain_objective`` into ``target``, evaluated every ``cfg.pretrain_eval_every`` steps;
    returns ``target``."""
    from hralign.pretrain import PretrainConfig, pretrain

    if not stage_done(target):
        pcfg = PretrainConfig(pairs=str(pairs), out=str(target), domain="human", encoder=cfg.base_encoder,
                              objective=cfg.pretrain_objective, image_size=cfg.image_size, steps=cfg.pretrain_steps,
                              seed=0,
                              resume=(target / "run.json").is_file(), eval_every=cfg.pretrain_eval_every,
                              checkpoint_every=cfg.pretrain_eval_every)
        pretrain(pcfg, progress=progress, log=lambda _msg: None)
    return target


def _pretrain_curve(run: Path) -> list[dict[str, Any]]:
    """The held-out evaluation records of a pretraining run (step, TCN accuracy, kNN, retrieval)."""
    f = run / "metrics.jsonl"
    if not f.is_file():
        return []
    recs = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"step": r["step"], **r["eval"]} for r in recs if isinstance(r.get("eval"), dict)]  # the layer's eval lines


def _statistics(table: dict[str, dict[str, Any]], tasks: tuple[str, ...], samples: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for protocol, rows in table.items():
        # a sequential run stops rows at different rollouts: the joint bootstrap uses the goals (and seeds) every row has
        # (the first n of each task); each comparison at its own stop is in results["sequential"]
        n = min(len(g) for r in rows.values() for rec in r["per_seed"] for g in rec["per_goal"].values())
        k = min(len(r["per_seed"]) for r in rows.values())  # (rounds that add seeds: the seeds every row has)
        mats = {v: outcome_matrix({"per_seed": [{**rec, "per_goal": {t: rec["per_goal"][t][:n] for t in tasks}}
                                                for rec in sorted(r["per_seed"], key=lambda x: x["seed"])[:k]]}, tasks)
                for v, r in rows.items()}
        ref = "frozen" if "frozen" in mats else None
        boot = paired_bootstrap(mats, reference=ref, samples=samples)
        power = {}
        if ref is not None:
            for v, m in mats.items():
                if v != ref:
                    disc = discordant_share(m, mats[ref])
                    power[v] = {"discordant": disc,
                                "rollouts_for_0.10": rollouts_for_difference(0.10, max(disc, 0.10))}
        out[protocol] = {"bootstrap": boot, "power": power, "rollouts_per_cell": int(next(iter(mats.values())).size)}
        if LATENT_ROW in mats and LATENT_CONTROL_ROW in mats:  # the chain against its own control, paired
            pair = {v: mats[v] for v in (LATENT_ROW, LATENT_CONTROL_ROW)}
            b = paired_bootstrap(pair, reference=LATENT_CONTROL_ROW, samples=samples)[LATENT_ROW]
            disc = discordant_share(*pair.values())
            out[protocol]["latent_chain"] = {**b, "discordant": disc,
                                             "rollouts_for_0.10": rollouts_for_difference(0.10, max(disc, 0.10))}
    return out


def rename_rows(value: Any) -> Any:
    """``value`` with every dict key found in :data:`ROW_ALIASES` renamed (results written before the rename)."""
    if isinstance(value, dict):
        return {ROW_ALIASES.get(k, k): rename_rows(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rename_rows(v) for v in value]
    return value


def format_ci(b: dict[str, float], diff: bool = False) -> str:
    """A bootstrap entry as ``mean [lo, hi]`` (``diff``: the paired difference, signed)."""
    if diff:
        return f"{b['diff']:+.2f} [{b['diff_lo']:+.2f}, {b['diff_hi']:+.2f}]"
    return f"{b['mean']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}]"


def _probe_cell(m: dict[str, Any]) -> tuple[str, str]:
    """The action-probe cell of a spread entry and its mark ('*' for a file written by the earlier probe)."""
    if m.get("action_probe_r2") is not None:
        return f"{m['action_probe_r2']:.3f} ({m['action_probe_r2_proprio']:.3f})", ""
    if m.get("probe_r2") is not None:  # spread.json files committed before the one probe definition
        return f"{m['probe_r2']:.3f}* ({m['probe_r2_proprio']:.3f}*)", "*"
    return "-", ""


def alignment_predicts_transfer(alignment: dict[str, dict[str, float]],
                                 transfer: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Spearman's rho (with its bootstrap interval over rows, :func:`hralign.metrics.rank_correlation`)
    between each held-out alignment measure of the rows and their `transfer` success: whether the cheap
    offline measure predicts the closed-loop one. Empty with fewer than 3 rows having both."""
    from hralign.metrics import rank_correlation

    rows = [v for v in alignment if v in transfer]
    if len(rows) < 3:
        return {}
    success = [transfer[v]["mean"] for v in rows]
    return {k: rank_correlation([alignment[v][k] for v in rows], success)
            for k in ("frame_error", "r2h_top1", "knn_r2h")}


def _rho_text(r: dict[str, Any]) -> str:
    if r["rho"] is None:
        return f"- ({r['note']})"
    ci = f" [{r['lo']:+.2f}, {r['hi']:+.2f}]" if r["lo"] is not None else ""
    return f"{r['rho']:+.2f}{ci} (n {r['n']})"


def format_v2(results: dict[str, Any]) -> str:
    """Markdown: success [95% CI] per row and protocol, differences to frozen, power, alignment, times."""
    protocols = results["protocols"]
    rows: list[str] = []
    for p in protocols:
        rows += [v for v in results["table"][p] if v not in rows]
    st, ev = results["stats"], results["eval"]
    if not protocols:
        return "# MetaWorld v2: no (protocol, row, seed) finished with frozen yet\n"
    per_protocol = ev["seeds"] if isinstance(ev["seeds"], dict) else {p: ev["seeds"] for p in protocols}
    seeds = "/".join(dict.fromkeys(str(per_protocol[p]) for p in protocols))  # one figure when they agree
    cells = "/".join(dict.fromkeys(str(st[p]["rollouts_per_cell"]) for p in protocols))
    title = "# MetaWorld v2: held-out evaluation tasks" + (" (PARTIAL: finished seeds only)" if results.get("partial") else "")
    lines = [title, "",
             f"pretraining tasks ({len(results['tasks']['pretrain'])}): {', '.join(results['tasks']['pretrain'])}; "
             f"pair tasks: {', '.join(results['tasks']['pair'])}; evaluation tasks: {', '.join(results['tasks']['eval'])}",
             f"{ev['rollouts']} goals/task x {seeds} BC seeds = {cells} rollouts per cell, the same goals and seeds "
             "in every row; success [95% CI, paired bootstrap over goals and seeds]", "",
             "| row | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for v in rows:
        lines.append(f"| {v} | " + " | ".join(format_ci(st[p]["bootstrap"][v]) if v in st[p]["bootstrap"] else "-"
                                              for p in protocols) + " |")
    lines += ["", "Difference to frozen [95% CI, paired]; rollouts per cell a 10-point difference needs (80% power, "
              "from the measured discordance):", "",
              "| row | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for v in rows:
        if v in ("frozen",):
            continue
        cells = []
        for p in protocols:
            b = st[p]["bootstrap"].get(v)
            if b is None or "diff" not in b:
                cells.append("-")
                continue
            cells.append(f"{format_ci(b, True)} (n10 {st[p]['power'][v]['rollouts_for_0.10']})")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    chain = {p: st[p]["latent_chain"] for p in protocols if "latent_chain" in st[p]}
    if chain:
        lines += ["", f"{LATENT_ROW} - {LATENT_CONTROL_ROW} [95% CI, paired]: " + "; ".join(
            f"{p} {format_ci(b, True)} (n10 {b['rollouts_for_0.10']})" for p, b in chain.items())]
        if results.get("lam"):
            lines.append("LAM on the corpus, held-out corpus frame pairs: " + ", ".join(
                f"{k} {v:.3f}" for k, v in results["lam"].items()))
        if results.get("lam_eval"):
            from hralign.lam.measures import format_measures

            lines += ["", "LAM on the evaluation file (tasks it never saw; hralign.lam.measures, as `hralign lam "
                      "eval --lam`):", ""] + [f"- {line}" for line in format_measures(results["lam_eval"])]
    if results.get("spread"):
        lines += ["", "Robot-clip spread (every robot clip, mean-pooled features; cos = mean pairwise cosine, 1 = one "
                  "point; rel std = mean per-dim std / RMS of the mean descriptor) and robot->robot kNN task accuracy "
                  "(k=5, leave-one-out); action probe R^2 from frame features to the expert's action, 5 folds grouped "
                  "by clip (hralign.metrics.action_probe_r2), with its proprio-only floor:", "",
                  "| encoder | file | clips (tasks) | robot cos | rel std | kNN r->r (chance) | action probe R^2 "
                  "(proprio only) | frame rank |", "|---|---|---|---|---|---|---|---|"]
        earlier = False
        for v, per_file in rename_rows(results["spread"]).items():
            for f, m in per_file.items():
                probe, mark = _probe_cell(m)
                earlier = earlier or bool(mark)
                lines.append(f"| {v} | {f} | {m['clips']} ({m['tasks']}) | {m['robot_cos']:.4f} | {m['relative_std']:.3f} "
                             f"| {m['knn_r2r']:.2f} ({m['chance']:.2f}) | {probe} | "
                             + (f"{m['frame_rank']:.1f} |" if m.get("frame_rank") is not None else "- |"))
        if earlier:
            lines.append("\n* written by an earlier probe (features + proprio vs proprio, one train/validation split of "
                         "the clips); not comparable with the grouped 5-fold probe of today's runs")
    if "transfer" in protocols and ORACLE_ROW in st["transfer"]["bootstrap"]:
        o = st["transfer"]["bootstrap"][ORACLE_ROW]["mean"]
        lines += ["", f"transfer / human-view oracle ({o:.2f}): " + ", ".join(
            f"{v} {b['mean'] / o:.2f}" if o > 0 else f"{v} -" for v, b in st["transfer"]["bootstrap"].items()
            if v != ORACLE_ROW)]
    if results.get("alignment"):
        lines += ["", "Alignment on the evaluation tasks (no adapter saw them; held-out pairs): robot->human top-1, kNN task "
                  "accuracy (k=5) r->r / r->h, frame error, mean pairwise cosine of robot / human clip descriptors:", "",
                  "| row | r->h top1 | kNN r->r | kNN r->h | frame error | robot cos | human cos |", "|---|---|---|---|---|---|---|"]
        for v, m in results["alignment"].items():
            lines.append(f"| {v} | {m['r2h_top1']:.2f} | {m['knn_r2r']:.2f} | {m['knn_r2h']:.2f} | "
                         f"{m['frame_error']:.2f} | {m['robot_cos']:.4f} | {m['human_cos']:.4f} |")
        if "transfer" in protocols:
            pred = alignment_predicts_transfer(results["alignment"], st["transfer"]["bootstrap"])
            if pred:
                lines += ["", "Does held-out alignment rank the rows as `transfer` does? Spearman over the rows with "
                          "both, 95% bootstrap interval over rows (a useful frame error has rho < 0, r->h top-1 rho > 0): "
                          + "; ".join(f"{k} rho {_rho_text(r)}" for k, r in pred.items())]
    if results.get("pretrain_curve"):
        lines += ["", "Pretraining on the corpus, held-out corpus clips: " + "; ".join(
            f"step {r.get('step')}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                 if k != "step" and isinstance(v, (int, float)))
            for r in results["pretrain_curve"])]
    t = results["timings_s"]
    lines += ["", "wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in t.items()
                                            if k.startswith(("collect", "pretrain", "adapt", "align", "lam", "spread"))
                                            or k == "eval")]
    if "eval rollouts/s" in t:  # a run whose evaluation finished in one call
        lines.append(f"evaluation: {t['eval rollouts/s']:.2f} rollouts/s with {t.get('eval workers', '?')} worker process(es)")
    if results.get("peak_rss"):
        lines.append(f"peak RSS: main {results['peak_rss']['main_mb']:.0f} MB, largest worker "
                     f"{results['peak_rss']['workers_max_mb']:.0f} MB")
    w = results.get("worker_time")
    if w and w.get("rollouts_per_s"):
        lines.append(f"finished cells: {w['rollouts']} rollouts in {w['seconds']:.0f} s of worker time (BC training "
                     f"included) = {w['rollouts_per_s']:.3f} rollouts/s per worker process")
    if "eval worker_s" in t:
        lines.append(f"evaluation worker time: {t['eval worker_s']:.0f} s (features, training and rollouts of every cell)")
    seq = results.get("sequential")
    if seq:
        lines += ["", f"## Sequential evaluation: {seq['rule']}, target half-width {seq['config']['target_half_width']}",
                  "| protocol | comparison | difference [interval at the look's level] | stopped | rollouts per row |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['protocol']} | {c['row']} - {c['reference']} | {c['diff']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] "
                  f"| look {c['look']}: {c['stop']} | {c['rollouts']} |" for c in seq["comparisons"]]
    if any(results.get("pending", {}).values()):
        lines.append("not finished for every seed of frozen yet: " + "; ".join(
            f"{p}: {', '.join(v)}" for p, v in results["pending"].items() if v))
    return "\n".join(lines) + "\n"


def finished_cells(out: str | Path) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Task sets, table and pending rows of every (protocol, row, seed) finished in ``out``; nothing is run.

    Per protocol, the seeds that ``frozen`` (the reference of every difference) has finished set the
    rows' seeds; a row that has not finished all of them yet is listed under ``pending`` instead of
    being compared on fewer seeds (the bootstrap pairs rows seed by seed and goal by goal).
    """
    out = Path(out)
    sets = out / "tasksets.json"
    if not sets.is_file():
        raise HRAlignError(f"--out {out}: no tasksets.json; expected a `hralign bench metaworld-v2` directory")
    tasks = json.loads(sets.read_text(encoding="utf-8"))
    table: dict[str, dict[str, Any]] = {}
    pending: dict[str, list[str]] = {}
    for protocol in sorted(PROTOCOLS, key=("robot", "few-shot", "transfer").index):  # the full preset's order
        found: dict[str, dict[int, dict[str, Any]]] = {}
        for f in sorted((out / "eval" / protocol).glob("*/*/seed*.json")):
            if f.stem[4:].isdigit():
                found.setdefault(f.parent.name, {})[int(f.stem[4:])] = json.loads(f.read_text(encoding="utf-8"))
        if "frozen" not in found:
            pending[protocol] = sorted(found)
            continue
        seeds = sorted(found["frozen"])
        first = (PROPRIO_ROW, "random-init", "frozen")  # the order of a finished run's table
        rows = sorted(found, key=lambda v: (first.index(v) if v in first else len(first), not v.startswith("adapted"), v))
        table[protocol] = {v: {"per_seed": [found[v][k] for k in seeds]} for v in rows if set(seeds) <= set(found[v])}
        pending[protocol] = sorted(v for v in found if v not in table[protocol])
    return tasks, table, pending


def partial_results(out: str | Path, samples: int = 2000) -> dict[str, Any]:
    """The table of every (protocol, row, seed) finished so far in ``out`` (:func:`finished_cells`): what a
    full run that spans sessions (or is still running) can already say. Nothing is run.
    """
    out = Path(out)
    tasks, table, pending = finished_cells(out)
    order = [p for p in ("robot", "few-shot", "transfer") if p in table]
    goals = len(table[order[0]]["frozen"]["per_seed"][0]["per_goal"][tasks["eval"][0]]) if order else None
    protocols = order
    seed_files = [r for rows in table.values() for row in rows.values() for r in row["per_seed"]]
    busy = sum(r.get("train_s", 0.0) + r.get("rollout_s", 0.0) for r in seed_files)
    done_rollouts = sum(len(g) for r in seed_files for g in r["per_goal"].values())
    timings_f = out / "timings.json"
    spread_f = out / "spread.json"
    results = {"tasks": tasks, "protocols": protocols, "partial": True, "pending": pending,
               "eval": {"rollouts": goals, "seeds": {p: len(next(iter(table[p].values()))["per_seed"]) for p in protocols}},
               "table": table, "stats": _statistics(table, tuple(tasks["eval"]), samples),
               "pretrain_curve": _pretrain_curve(out / "pretrain"),
               "timings_s": json.loads(timings_f.read_text(encoding="utf-8")) if timings_f.is_file() else {},
               "spread": rename_rows(json.loads(spread_f.read_text(encoding="utf-8"))) if spread_f.is_file() else None,
               "peak_rss": None,
               "worker_time": {"rollouts": done_rollouts, "seconds": busy,  # BC training included, per worker process
                               "rollouts_per_s": done_rollouts / busy if busy > 0 else None}}
    if protocols:
        write_text_atomic(out / "results_partial.json", json.dumps(results, indent=2))
        write_text_atomic(out / "results_partial.md", format_v2(results))
    return results


def _write(out: Path, results: dict[str, Any]) -> None:
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", format_v2(results))


__all__ = ["EVAL_VIEWS_BASE_ROW", "LATENT_CONTROL_ROW", "LATENT_ROW", "ORACLE_ROW", "PRESETS", "ROW_ALIASES", "V2Config",
           "eval_job", "finished_cells", "format_ci", "format_v2", "lam_labels_stage", "lam_measures_stage", "lam_stage",
           "partial_results", "alignment_predicts_transfer", "record_choice",
           "base_stage", "pretrain_stage", "rename_rows", "run_bench_v2", "run_eval_jobs", "spread_stage"]
