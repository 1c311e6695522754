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


_B = BenchConfig()


@bench.command("metaworld", short_help="Collect, pretrain, adapt, then BC success per encoder variant and protocol.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Benchmark dir (mw.h5, pretrain/, adapt/, "
                                                                             "eval/, results.*).")
@click.option("--tasks", default=",".join(_C.tasks), show_default=True, help=_help(CollectConfig, "tasks"))
@click.option("--episodes", type=int, default=_C.episodes, show_default=True, help=_help(CollectConfig, "episodes"))
@click.option("--image-size", type=int, default=_C.image_size, show_default=True, help=_help(CollectConfig, "image_size"))
@click.option("--human-camera", default=None, help=_help(CollectConfig, "human_camera"))
@click.option("--collect-seed", type=int, default=_C.seed, show_default=True, help=_help(CollectConfig, "seed"))
@click.option("--protocols", default=",".join(_B.protocols), show_default=True, help=_help(BenchConfig, "protocols"))
@click.option("--encoder", default=_B.encoder, show_default=True, help=_help(BenchConfig, "encoder"))
@click.option("--weights", default=None, help=_help(BenchConfig, "weights"))
@click.option("--encoder-image-size", type=int, default=None, help=_help(BenchConfig, "encoder_image_size"))
@click.option("--pretrain-steps", type=int, default=_B.pretrain_steps, show_default=True,
              help=_help(BenchConfig, "pretrain_steps"))
@click.option("--adapters", default=",".join(_B.adapters), show_default=True, help=_help(BenchConfig, "adapters"))
@click.option("--adapt-steps", type=int, default=_B.adapt_steps, show_default=True, help=_help(BenchConfig, "adapt_steps"))
@click.option("--adapt-lr", type=float, default=_B.adapt_lr, show_default=True, help=_help(BenchConfig, "adapt_lr"))
@click.option("--adapt-frame-weight", type=float, default=_B.adapt_frame_weight, show_default=True,
              help=_help(BenchConfig, "adapt_frame_weight"))
@click.option("--seed", type=int, default=_B.seed, show_default=True, help=_help(BenchConfig, "seed"))
@click.option("--rollouts", type=int, default=_E.rollouts, show_default=True, help=_help(SimEvalConfig, "rollouts"))
@click.option("--seeds", type=int, default=_E.seeds, show_default=True, help=_help(SimEvalConfig, "seeds"))
@click.option("--few-shot", type=int, default=_E.few_shot, show_default=True, help=_help(SimEvalConfig, "few_shot"))
@click.option("--steps", type=int, default=_E.steps, show_default=True, help=_help(SimEvalConfig, "steps"))
@click.option("--max-steps", type=int, default=_E.max_steps, show_default=True, help=_help(SimEvalConfig, "max_steps"))
@click.option("--envs", type=int, default=_E.envs, show_default=True, help=_help(SimEvalConfig, "envs"))
@click.option("--resume", is_flag=True, help="Reuse OUT/mw.h5 and every finished stage (pretrain, adapters, seeds).")
def metaworld(out: str, tasks: str, episodes: int, image_size: int, human_camera: str | None, collect_seed: int,
              protocols: str, encoder: str, weights: str | None, encoder_image_size: int | None, pretrain_steps: int,
              adapters: str, adapt_steps: int, adapt_lr: float, adapt_frame_weight: float, seed: int, rollouts: int, seeds: int, few_shot: int,
              steps: int, max_steps: int, envs: int, resume: bool) -> None:
    """Collect paired MetaWorld demos, pretrain the base on the human views, adapt the robot branch
    (adapters and a full fine-tune), then evaluate proprio-only / random-init / frozen / adapted /
    full fine-tune rows under each protocol; writes results.json, results.md and results.png.

    \b
    Example:
      MUJOCO_GL=egl hralign bench metaworld --out bench/ --tasks drawer-open,button-press-topdown \\
          --episodes 20 --rollouts 10 --seeds 3
    """
    ccfg = CollectConfig(tasks=tasks, episodes=episodes, image_size=image_size, human_camera=human_camera,
                         seed=collect_seed)
    bcfg = BenchConfig(protocols=protocols, encoder=encoder, weights=weights, encoder_image_size=encoder_image_size,
                       pretrain_steps=pretrain_steps, adapters=adapters, adapt_steps=adapt_steps, adapt_lr=adapt_lr,
                       adapt_frame_weight=adapt_frame_weight, seed=seed)
    ecfg = SimEvalConfig(rollouts=rollouts, seeds=seeds, few_shot=few_shot, steps=steps, max_steps=max_steps,
                         envs=envs)
    results = run_bench(out, ccfg, bcfg, ecfg, resume=resume, progress=True)
    click.echo(format_table(results))
