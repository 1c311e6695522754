"""`hralign pretrain`: train an encoder on human video with one of the registered objectives. Thin: parse, call, print."""

from __future__ import annotations

import click

from hralign.cli.options import config_kwargs, dataclass_options, resume_options
from hralign.errors import HRAlignError
from hralign.pretrain.config import PretrainConfig, objective_fields
from hralign.pretrain.objectives import OBJECTIVES


def objective_options(func):
    """One option per field of every registered objective's config (a field two objectives share,
    R3M's in ``r3m+vicreg``, is one option)."""
    seen: set[str] = set()
    groups = []
    for name, names in objective_fields().items():
        groups.append((name, tuple(n for n in names if n not in seen)))
        seen.update(groups[-1][1])
    for name, new in reversed(groups):  # decorators apply bottom-up: the registry's order in --help
        func = dataclass_options(OBJECTIVES[name].config_class, only=new)(func)
    return func


def objective_config(ctx: click.Context, options: dict):
    """The chosen objective's config from the parsed options; an option of another objective given
    on the command line is a one-line error naming the objectives it belongs to."""
    name = options["objective"]
    if name not in OBJECTIVES:  # PretrainConfig names the known objectives
        return None
    own = set(objective_fields()[name])
    given = [k for fields in objective_fields().values() for k in fields
             if k not in own and ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
    if given:
        k = given[0]
        owners = [n for n, fields in objective_fields().items() if k in fields]
        raise HRAlignError(f"`--{k.replace('_', '-')}` applies to --objective {' / '.join(owners)}, not {name}")
    config_class = OBJECTIVES[name].config_class
    return config_class(**config_kwargs(config_class, options))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@click.command("pretrain", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@dataclass_options(PretrainConfig, required=("pairs", "out"), exclude=("objective_config",))
@objective_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def pretrain(ctx: click.Context, quiet: bool, **options) -> None:
    """Pretrain an encoder on the clips of a pairs file with R3M's objective or another one.

    --objective r3m (default): time-contrastive loss (frames s0 < s1 < s2 of a clip: s1 closer to
    s2 than s0 is, negatives from other clips), language alignment (a scorer ranks later frames
    above earlier ones for the clip's instruction, with a frozen local sentence encoder) and L1/L2
    penalties on the embeddings (Nair et al., 2022). r3m+vicreg adds VICReg's variance/covariance
    terms; mae is masked-autoencoder pretraining of a ViT encoder (VC-1, MVP, D4R); tcn-infonce a
    temporal InfoNCE with every other frame of the batch as a negative (TCN, Premier-TACO). Each
    one's options are prefixed with its name, R3M's are not (docs/pretrain.md). Writes an encoder
    directory that `hralign.load_encoder(OUT)` loads frozen, and R3M's model.pt layout beside it
    (ResNets). Works under `torchrun --nproc_per_node N`
    and `accelerate launch` (the global batch is split; negatives come from all of it).

    \b
    Example:
      hralign pairs synth --out demo.h5
      hralign pretrain --pairs demo.h5 --domain human --encoder r3m-resnet18 --out enc/
      hralign pretrain --pairs demo.h5 --objective mae --encoder timm:vit_tiny_patch16_224 --out mae/
      hralign adapt --pairs demo.h5 --encoder enc/ --out runs/demo
    """
    from hralign.pretrain.trainer import pretrain as run  # torch and the encoders load only when a run starts

    options = resume_options(ctx, options)
    shared = config_kwargs(PretrainConfig, options)
    config = PretrainConfig(**shared, objective_config=objective_config(ctx, options))
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
    click.echo(f"objective: {result.objective}")
    click.echo(f"language term: {result.language}")
    click.echo(f"held-out time-contrastive accuracy ({d} clips): {_fmt(fin.get(f'tcn_acc_{d}'))} "
               f"(initial encoder {_fmt(ini.get(f'tcn_acc_{d}'))}, chance 0.333)")
    for dom in ("human", "robot"):
        if f"knn_{dom}" in fin:
            click.echo(f"kNN task accuracy, held-out {dom} clips: trained {_fmt(fin[f'knn_{dom}'])} "
                       f"vs initial {_fmt(ini.get(f'knn_{dom}'))} "
                       f"({chance}; leave-one-out over all {dom} clips: {_fmt(fin.get(f'knn_all_{dom}'))} "
                       f"vs {_fmt(ini.get(f'knn_all_{dom}'))})")
    prs = [f"{dom} {_fmt(fin[f'frame_pr_{dom}'])} (initial {_fmt(ini.get(f'frame_pr_{dom}'))})"
           for dom in ("human", "robot") if f"frame_pr_{dom}" in fin]
    if prs:
        click.echo(f"frame participation ratio (directions of the per-frame features, standardised): {'; '.join(prs)}")
    if "knn_robot_to_human" in fin or "h2r_top1" in fin:
        click.echo(f"domain gap (trained): robot clips vs human references kNN {_fmt(fin.get('knn_robot_to_human'))}; "
                   f"human->robot retrieval top1 {_fmt(fin.get('h2r_top1'))} top5 {_fmt(fin.get('h2r_top5'))}")
