"""`hralign pretrain`: train an encoder on human video with R3M's objective. Thin: parse, call, print."""

from __future__ import annotations

import click

from hralign.cli.options import dataclass_options, resume_options
from hralign.pretrain.config import PretrainConfig


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@click.command("pretrain", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@dataclass_options(PretrainConfig, required=("pairs", "out"))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def pretrain(ctx: click.Context, quiet: bool, **options) -> None:
    """Pretrain an encoder on the clips of a pairs file with R3M's objective.

    Time-contrastive loss (frames s0 < s1 < s2 of a clip: s1 closer to s2 than s0 is, negatives
    from other clips), language alignment (a scorer ranks later frames above earlier ones for the
    clip's instruction, with a frozen local sentence encoder) and L1/L2 penalties on the
    embeddings (Nair et al., 2022). Writes an encoder directory that `hralign.load_encoder(OUT)`
    loads frozen, and R3M's model.pt layout beside it. Works under `torchrun --nproc_per_node N`
    and `accelerate launch` (the global batch is split; negatives come from all of it).

    \b
    Example:
      hralign pairs synth --out demo.h5
      hralign pretrain --pairs demo.h5 --domain human --encoder r3m-resnet18 --out enc/
      hralign adapt --pairs demo.h5 --encoder enc/ --out runs/demo
    """
    from hralign.pretrain.trainer import pretrain as run  # torch and the encoders load only when a run starts

    config = PretrainConfig(**resume_options(ctx, options))
    result = run(config, progress=not quiet, log=lambda s: click.echo(s, err=True))
    if result is None:  # not the main process of a multi-process run
        return
    ini, fin = result.initial, result.final
    d = "human" if config.domain == "both" else config.domain
    chance = f"chance {1 / result.num_tasks:.3f}" if result.num_tasks else "no tasks"
    click.echo(f"encoder written to {result.out} (hralign.load_encoder('{result.out}'))"
               + (f"; R3M layout: {result.r3m_checkpoint}" if result.r3m_checkpoint else ""))
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"language term: {result.language}")
    click.echo(f"held-out time-contrastive accuracy ({d} clips): {_fmt(fin.get(f'tcn_acc_{d}'))} "
               f"(initial encoder {_fmt(ini.get(f'tcn_acc_{d}'))}, chance 0.333)")
    for dom in ("human", "robot"):
        if f"knn_{dom}" in fin:
            click.echo(f"kNN task accuracy, held-out {dom} clips: trained {_fmt(fin[f'knn_{dom}'])} "
                       f"vs initial {_fmt(ini.get(f'knn_{dom}'))} "
                       f"({chance}; leave-one-out over all {dom} clips: {_fmt(fin.get(f'knn_all_{dom}'))} "
                       f"vs {_fmt(ini.get(f'knn_all_{dom}'))})")
    if "knn_robot_to_human" in fin or "h2r_top1" in fin:
        click.echo(f"domain gap (trained): robot clips vs human references kNN {_fmt(fin.get('knn_robot_to_human'))}; "
                   f"human->robot retrieval top1 {_fmt(fin.get('h2r_top1'))} top5 {_fmt(fin.get('h2r_top5'))}")
