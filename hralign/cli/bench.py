"""``hralign bench``: benchmarks run from one command. ``metaworld``: collect + closed-loop table.

Thin: parse, call :func:`hralign.sim.bench.run_bench`, print.
"""

from __future__ import annotations

import dataclasses

import click

from hralign.sim.bench import BenchConfig, format_table, run_bench
from hralign.sim.collect import CollectConfig
from hralign.sim.evaluate import SimEvalConfig


def _help(cls: type, name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


_C, _E = CollectConfig(), SimEvalConfig()


@click.group("bench")
def bench() -> None:
    """Benchmarks that write a results table (MetaWorld closed loop; needs the [sim] extra).

    \b
    Example:
      hralign bench metaworld --out bench/ --tasks push --episodes 10 --rollouts 10 --seeds 3
    """


@bench.command("metaworld", short_help="Collect MetaWorld pairs, then BC success per encoder variant and protocol.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark dir (mw.h5, eval/, results.*).")
@click.option("--tasks", default=",".join(_C.tasks), show_default=True, help=_help(CollectConfig, "tasks"))
@click.option("--episodes", type=int, default=_C.episodes, show_default=True, help=_help(CollectConfig, "episodes"))
@click.option("--image-size", type=int, default=_C.image_size, show_default=True, help=_help(CollectConfig, "image_size"))
@click.option("--human-camera", default=None, help=_help(CollectConfig, "human_camera"))
@click.option("--seed", type=int, default=_C.seed, show_default=True, help=_help(CollectConfig, "seed"))
@click.option("--protocols", default=",".join(BenchConfig().protocols), show_default=True,
              help=_help(BenchConfig, "protocols"))
@click.option("--encoder", default="r3m-resnet18", show_default=True, help=_help(BenchConfig, "encoder"))
@click.option("--weights", default=None, help=_help(BenchConfig, "weights"))
@click.option("--encoder-image-size", type=int, default=None, help=_help(BenchConfig, "encoder_image_size"))
@click.option("--adapter", "adapters", multiple=True, type=click.Path(file_okay=False),
              help="Adapter dir (repeatable), e.g. from `hralign adapt --pairs OUT/mw.h5`.")
@click.option("--rollouts", type=int, default=_E.rollouts, show_default=True, help=_help(SimEvalConfig, "rollouts"))
@click.option("--seeds", type=int, default=_E.seeds, show_default=True, help=_help(SimEvalConfig, "seeds"))
@click.option("--few-shot", type=int, default=_E.few_shot, show_default=True, help=_help(SimEvalConfig, "few_shot"))
@click.option("--steps", type=int, default=_E.steps, show_default=True, help=_help(SimEvalConfig, "steps"))
@click.option("--max-steps", type=int, default=_E.max_steps, show_default=True, help=_help(SimEvalConfig, "max_steps"))
@click.option("--resume", is_flag=True, help="Reuse OUT/mw.h5 and finished (variant, seed) results.")
def metaworld(out: str, tasks: str, episodes: int, image_size: int, human_camera: str | None, seed: int,
              protocols: str, encoder: str, weights: str | None, encoder_image_size: int | None,
              adapters: tuple[str, ...], rollouts: int, seeds: int, few_shot: int, steps: int, max_steps: int,
              resume: bool) -> None:
    """Collect paired MetaWorld demos, then evaluate proprio-only / random-init / frozen / adapted rows
    under each protocol; writes results.json, results.md and results.png.

    \b
    Example:
      MUJOCO_GL=egl hralign bench metaworld --out bench/ --tasks push,pick-place --episodes 15 \\
          --weights r3m/model.pt --adapter runs/mw/adapter --rollouts 20 --seeds 3
    """
    ccfg = CollectConfig(tasks=tasks, episodes=episodes, image_size=image_size, human_camera=human_camera, seed=seed)
    bcfg = BenchConfig(protocols=protocols, encoder=encoder, weights=weights, encoder_image_size=encoder_image_size,
                       adapters=tuple(adapters))
    ecfg = SimEvalConfig(rollouts=rollouts, seeds=seeds, few_shot=few_shot, steps=steps, max_steps=max_steps)
    results = run_bench(out, ccfg, bcfg, ecfg, resume=resume, progress=True)
    click.echo(format_table(results))
