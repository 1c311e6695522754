"""`hralign adapt`: train an HR-Align adapter on a pairs file."""

from __future__ import annotations

import click

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt
from hralign.cli.options import dataclass_options, renamed_option, resume_options


@click.command("adapt")
@dataclass_options(AdaptConfig, required=("pairs", "out"))
@renamed_option("--adapter", "--method", note=" (the adapter method; `--adapter DIR` elsewhere is an adapter directory)")
@click.pass_context
def adapt(ctx: click.Context, **kwargs) -> None:
    """Train an HR-Align adapter on the robot branch of a frozen encoder.

    The adapter is trained with HR-Align's contrastive loss so adapted robot features sit next
    to the matched human features (and closer than the unadapted robot features). The run
    directory gets adapter/ (load with hralign.load_encoder), checkpoints/, metrics.jsonl,
    run.json and eval.json. Works under `torchrun --nproc_per_node N` and `accelerate launch`.
    With --resume, options not given come from the run (docs/training.md).

    \b
    Example:
      hralign adapt --pairs demo/pairs.h5 --encoder demo/encoder --out runs/demo
      hralign adapt --pairs data.h5 --encoder r3m-resnet50 --weights ~/.r3m/r3m_50/model.pt \\
                    --method lora --placement late --steps 8000 --batch-size 200 --out runs/r3m
      hralign adapt --pairs data.h5 --method lora --placement middle --frame-weight 1 --terms mmd=10 --out runs/mmd
      torchrun --nproc_per_node 2 -m hralign.cli.main adapt --pairs data.h5 --out runs/ddp
      accelerate launch --multi_gpu --num_processes 2 -m hralign.cli.main adapt --pairs data.h5 --out runs/acc
    """
    run_adapt(AdaptConfig(**resume_options(ctx, kwargs)), progress=True, echo=click.echo)
