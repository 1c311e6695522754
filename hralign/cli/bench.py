"""``hralign bench``: benchmarks run from one command. ``metaworld``: collect + closed-loop table.

Thin: parse, call the benchmark package :mod:`hralign_bench` (``run_bench``, ``run_bench_v2``), print.
This module is the only one of ``hralign`` that imports ``hralign_bench``; ``hralign.cli.main``
loads it only for ``hralign bench``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from hralign.cli.options import config_kwargs, dataclass_options, parse_value
from hralign.errors import HRAlignError
from hralign.sim.collect import CollectConfig
from hralign.sim.evaluate import SimEvalConfig
from hralign.sim.sequential import SequentialConfig
from hralign_bench.draws import compare_draws, format_draws, write_draws
from hralign_bench.figure import figure_from_run
from hralign_bench.tasksets import TaskSets
from hralign_bench.v1 import BenchConfig, format_table, run_bench
from hralign_bench.v2 import PRESETS, V2Config, format_v2, partial_results, run_bench_v2


def _help(cls: type, name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


# `bench metaworld` sets these fields of the collect and evaluation configs (the rest keep their defaults);
# the collect seed is --collect-seed beside BenchConfig's --seed
_COLLECT = ("tasks", "episodes", "image_size", "human_camera", "seed")
_COLLECT_RENAME = {"seed": "collect_seed"}
_COLLECT_OPTIONS = tuple(_COLLECT_RENAME.get(n, n) for n in _COLLECT)
_EVAL = ("rollouts", "seeds", "few_shot", "steps", "max_steps", "envs")


@click.group("bench")
def bench() -> None:
    """Benchmarks that write a results table (MetaWorld closed loop; needs the [sim] extra).

    \b
    Example:
      hralign bench metaworld --out bench/ --tasks push --episodes 10 --rollouts 10 --seeds 3
    """


@bench.command("metaworld", short_help="Collect, pretrain, adapt, then BC success per encoder variant and protocol.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark dir (mw.h5, pretrain/, adapt/, "
                                                                             "eval/, results.*).")
@dataclass_options(CollectConfig, only=_COLLECT, rename=_COLLECT_RENAME)
@dataclass_options(BenchConfig)
@dataclass_options(SimEvalConfig, only=_EVAL)
@click.option("--resume", is_flag=True, help="Reuse OUT/mw.h5 and every finished stage (pretrain, adapters, seeds).")
def metaworld(out: str, resume: bool, **options: Any) -> None:
    """Collect paired MetaWorld demos, pretrain the base on the human views, adapt the robot branch
    (adapters and a full fine-tune), then evaluate proprio-only / random-init / frozen / adapted /
    full fine-tune rows under each protocol; writes results.json, results.md and results.png.

    \b
    Example:
      MUJOCO_GL=egl hralign bench metaworld --out bench/ --tasks drawer-open,button-press-topdown \\
          --episodes 20 --rollouts 10 --seeds 3
    """
    ccfg = CollectConfig(**config_kwargs(CollectConfig, {k: options[k] for k in _COLLECT_OPTIONS}, _COLLECT_RENAME))
    bcfg = BenchConfig(**config_kwargs(BenchConfig, options))
    ecfg = SimEvalConfig(**config_kwargs(SimEvalConfig, {k: options[k] for k in _EVAL}))
    results = run_bench(out, ccfg, bcfg, ecfg, resume=resume, progress=True)
    click.echo(format_table(results))


@bench.command("metaworld-v2", short_help="v2: corpus-pretrained base, adapters on pair tasks, held-out evaluation tasks, CIs.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark dir (corpus.h5, pairs.h5, eval.h5, "
                                                                             "pretrain/, adapt/, eval/, results.*).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="quick", show_default=True,
              help="quick: 16.5 min measured on 2 idle cores; full: the committed v2 table (~4-5.5 h of compute on 2 cores, measured; docs/sim.md).")
@click.option("--pretrain-tasks", default=None, help=_help(TaskSets, "pretrain") + " Default: docs/sim.md's set.")
@click.option("--pair-tasks", default=None, help=_help(TaskSets, "pair") + " Default: docs/sim.md's set.")
@click.option("--eval-tasks", default=None, help=_help(TaskSets, "eval") + " Default: push,sweep-into.")
@click.option("--protocols", default=None, help="Protocols, comma-separated (default: the preset's).")
@click.option("--collect-seed", type=int, default=0, show_default=True, help=_help(V2Config, "collect_seed"))
@click.option("--workers", type=int, default=2, show_default=True, help=_help(V2Config, "workers"))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preset size, e.g. --set rollouts=20 --set pretrain_steps=500 (V2Config or sim eval keys).")
@click.option("--resume", is_flag=True, help="Reuse every finished stage in OUT (the task sets must be unchanged).")
@click.option("--report", is_flag=True, help="Run nothing: print the table of every (protocol, row, seed) finished so far in "
                                             "OUT (a run still going or stopped) and write OUT/results_partial.{md,json}.")
@click.option("--compare", type=click.Path(file_okay=False), default=None,
              help="With --report: a second draw of the same configuration (e.g. --collect-seed 1); prints each cell "
                   "per draw, pooled and the gap between draws with CIs, and writes OUT/results_draws.{md,json}.")
@click.option("--figure", is_flag=True, help="Run nothing: draw OUT/results.png, success and its 95% interval per row "
              "and protocol, from OUT/results.json (a finished run) or else OUT/results_partial.json (with --report: "
              "after writing it).")
@click.option("--sequential", is_flag=True, help="Roll out in rounds of --round-size and stop each row against frozen "
              "(and the latent chain against its control) once resolved or precise (alpha spent over the looks, --spending; "
              "docs/sim.md); the preset's rollouts are the maximum.")
@dataclass_options(SequentialConfig)
def metaworld_v2(out: str, preset: str, pretrain_tasks: str | None, pair_tasks: str | None, eval_tasks: str | None,
                 protocols: str | None, collect_seed: int, workers: int, overrides: tuple[str, ...], resume: bool,
                 report: bool, compare: str | None, figure: bool, sequential: bool, **seq_options: Any) -> None:
    """The v2 setting (docs/sim.md): pretrain the base on a human-video corpus of >= 20 other tasks,
    train adapters on pairs of other tasks, evaluate on held-out vision-dependent tasks with 95% CIs.

    \b
    Example:
      MUJOCO_GL=egl hralign bench metaworld-v2 --out bench_v2/ --preset quick
      hralign bench metaworld-v2 --out bench_v2/ --preset quick --resume      # after an interruption
      hralign bench metaworld-v2 --out bench_v2/ --report                     # what has finished so far
      hralign bench metaworld-v2 --out bench_v2/ --report --compare bench_v2_s1/  # two collect seeds side by side
      hralign bench metaworld-v2 --out bench_v2/ --figure                     # OUT/results.png from the results
    """
    if compare is not None and not report:
        raise HRAlignError(f"--compare {compare}: only with --report (it compares finished runs; it runs nothing)")
    seq = SequentialConfig(**config_kwargs(SequentialConfig, seq_options)) if sequential else None
    if sequential and report:
        raise HRAlignError("--sequential: runs rollouts in rounds, it does not apply to --report"
                           + (" (two draws are independent samples, not a paired design)" if compare else ""))
    if figure and (compare is not None or sequential):
        raise HRAlignError("--figure: draws one run's results; it does not apply to --compare or --sequential")
    if compare is not None:
        res = compare_draws(out, compare)
        write_draws(out, res)
        click.echo(format_draws(res))
        return
    if report:
        click.echo(format_v2(partial_results(out)))
    if figure:
        click.echo(f"figure: {figure_from_run(out)}")
    if report or figure:
        return
    p = PRESETS[preset]
    v2, ev = dict(p["v2"]), dict(p["eval"])
    v2_keys = {f.name for f in dataclasses.fields(V2Config)}
    ev_keys = {f.name for f in dataclasses.fields(SimEvalConfig)} - {"protocol"}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or key not in v2_keys | ev_keys:
            raise HRAlignError(f"--set {item!r}: expected KEY=VALUE with KEY among {', '.join(sorted(v2_keys | ev_keys))}")
        target = v2 if key in v2_keys else ev
        target[key] = parse_value(V2Config if key in v2_keys else SimEvalConfig, key, value)
    tasks = TaskSets(**{k: v for k, v in (("pretrain", pretrain_tasks), ("pair", pair_tasks), ("eval", eval_tasks))
                        if v is not None})
    cfg = V2Config(**{**v2, "collect_seed": collect_seed, "workers": workers})
    prot = tuple(x.strip() for x in protocols.split(",") if x.strip()) if protocols else tuple(p["protocols"])
    results = run_bench_v2(out, tasks, cfg, SimEvalConfig(**ev), protocols=prot, resume=resume, progress=True,
                           sequential=seq)
    click.echo(format_v2(results))
