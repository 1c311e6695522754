"""``hralign sim``: MetaWorld paired rollouts (``collect``) and closed-loop policy evaluation (``eval``).

Thin: parse, call :mod:`hralign.sim`, print. Needs the ``[sim]`` extra (mujoco, metaworld,
gymnasium); without it the commands exit 2 with the install line. Option help comes from the
config dataclasses; ``eval``'s policy options from every registered policy kind's config
(:mod:`hralign.cli.kinds`, built when the command runs, after the plug-in kinds load).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from hralign.cli.kinds import KindGroup, kind_configs, kind_options
from hralign.cli.options import config_kwargs, dataclass_options, renamed_option
from hralign.errors import HRAlignError
from hralign.policy import EncoderSource, get_policy_kind, train_config_class
from hralign.policy.factory import check_inputs
from hralign.sim.collect import CollectConfig, collect
from hralign.sim.evaluate import PROPRIO_ROW, SimEvalConfig, evaluate_sequential, evaluate_sim, format_results
from hralign.sim.sequential import SequentialConfig


@click.group("sim", cls=KindGroup)
def sim() -> None:
    """MetaWorld: paired human/robot-view expert rollouts and closed-loop policy evaluation ([sim] extra).

    \b
    Example:
      hralign sim collect --tasks push,pick-place --episodes 20 --image-size 64 --out mw.h5
      hralign sim eval --encoder r3m-resnet18 --adapter runs/mw/adapter --pairs mw.h5 --protocol transfer
    """


@sim.command("collect", short_help="Scripted-expert rollouts rendered as robot + human view into a pairs file.")
@dataclass_options(CollectConfig)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def collect_cmd(out: str, overwrite: bool, as_json: bool, **options: Any) -> None:
    """Roll out MetaWorld's scripted experts; render each step as the robot view and a re-skinned "human" view.

    \b
    Example:
      MUJOCO_GL=egl hralign sim collect --tasks push,pick-place --episodes 20 --image-size 64 --out mw.h5
      hralign sim collect --tasks push --episodes 5 --human-camera corner2 --out mw_xview.h5   # cross-view
    """
    cfg = CollectConfig(**options)
    summary = collect(out, cfg, overwrite=overwrite, progress=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for t, s in summary["tasks"].items():
        click.echo(f"{t}: kept {s['kept']} of {s['tried']} expert episodes in {s['seconds']:.1f}s")
    click.echo(f"wrote {summary['out']}: {summary['renders']} renders in {summary['seconds']:.1f}s "
               f"({summary['renders_per_s']:.1f} renders/s incl. physics); content sha256 {summary['content_sha256']}")


def make_eval_command() -> click.Command:
    """``sim eval`` with the options of every registered policy kind (built after the plug-ins load)."""

    @click.command("eval", short_help="A policy on a protocol's demos, run closed loop in MetaWorld; success mean +- std.")
    @click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False),
                  help="Pairs file written by `hralign sim collect`.")
    @click.option("--encoder", default=None, help="Encoder name or dir (frozen base; human-view features).")
    @click.option("--weights", default=None, help="Official checkpoint of a named --encoder.")
    @click.option("--adapter", default=None, type=click.Path(file_okay=False),
                  help="Adapter dir applied to robot-view frames (HR-Align adapts the robot branch).")
    @click.option("--encoder-image-size", type=int, default=None,
                  help="Encoder input side override (default: the encoder's own, e.g. 224 for R3M).")
    @click.option("--name", default=None, help="Row name of the encoder variant (default: encoder[+adapter]).")
    @click.option("--proprio-row/--no-proprio-row", default=True, show_default=True,
                  help="Also evaluate a proprio-only policy (the floor).")
    @dataclass_options(SimEvalConfig)
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Run dir (results.json, per-seed files).")
    # dest `resume_rows`: not the training configs' `resume` (a run's checkpoint), whose fields the kinds record here
    @click.option("--resume", "resume_rows", is_flag=True, help="Skip (variant, seed) results already in --out.")
    @click.option("--json", "as_json", is_flag=True, help="Print results.json.")
    @click.option("--sequential", is_flag=True, help="Roll out in rounds of --round-size and stop once the encoder row "
                  "minus the proprio-only row is resolved or precise (alpha spent over the looks, --spending; "
                  "docs/sim.md); --rollouts is the maximum.")
    @dataclass_options(SequentialConfig)
    @kind_options(train="own")
    @click.option("--labels", default=None, type=click.Path(dir_okay=False),
                  help="labels.h5 of --pairs (`hralign lam label`) for a kind trained on LAM labels (--kind latent).")
    @renamed_option("--policy", "--kind", note=" (the policy kind, as in `hralign policy train`)")
    def eval_cmd(pairs_path: str, encoder: str | None, weights: str | None, adapter: str | None,
                 encoder_image_size: int | None, name: str | None, proprio_row: bool, out: str, resume_rows: bool,
                 as_json: bool, sequential: bool, labels: str | None, **options: Any) -> None:
        """Train a policy of --kind on the protocol's demos and execute it closed loop from the robot view.

        \b
        transfer: human-view demos only; few-shot: + --few-shot robot demos per task; robot: robot demos only.
        Every variant and seed sees the same goals (--eval-seed).
        \b
        Example:
          hralign sim eval --pairs mw.h5 --encoder r3m-resnet18 --adapter runs/mw/adapter \\
              --protocol transfer --rollouts 10 --seeds 3 --out runs/mw_eval
          # GR-1-style policy, stage 1 on every human-view clip first
          hralign sim eval --pairs mw.h5 --encoder r3m-resnet18 --kind gr1 --history 4 --chunk 4 \\
              --pretrain-steps 1000 --protocol robot --out runs/mw_gr1
        """
        seq = SequentialConfig(**config_kwargs(SequentialConfig, options))
        cfg = SimEvalConfig(**config_kwargs(SimEvalConfig, options))
        rest = {k: v for k, v in options.items() if k not in {f.name for f in dataclasses.fields(SimEvalConfig)}
                | {f.name for f in dataclasses.fields(SequentialConfig)}}
        kind = get_policy_kind(cfg.kind)
        policy_config, train_options = kind_configs(kind, rest, train="own")
        train_config_class(kind)(**train_options)  # the kind's own training options checked before any work
        if labels is not None:
            check_inputs(kind, {"labels": labels})
            train_options["labels"] = labels
        elif "labels" in kind.inputs:
            raise HRAlignError(f"--kind {kind.name} trains on LAM labels: pass --labels labels.h5 (`hralign lam label`)")
        variants: dict = {}
        if proprio_row:
            variants[PROPRIO_ROW] = None
        if encoder is None and adapter is not None:
            raise HRAlignError("--adapter needs --encoder (the frozen base that encodes the human-view demos)")
        if encoder is not None:
            variants[name or (encoder + ("+adapter" if adapter else ""))] = EncoderSource(
                encoder, weights=weights, adapter=adapter, image_size=encoder_image_size)
        if not variants:
            raise HRAlignError("nothing to evaluate: pass --encoder or keep --proprio-row")
        common = {"resume": resume_rows, "progress": True, "policy_config": policy_config, "train_options": train_options}
        if sequential:
            if len(variants) < 2 or PROPRIO_ROW not in variants:
                raise HRAlignError("--sequential compares the encoder row with the proprio-only row on the same goals "
                                   "and seeds (a paired design); pass --encoder and keep --proprio-row")
            results = evaluate_sequential(pairs_path, out, variants, cfg, seq, PROPRIO_ROW, **common)
        else:
            results = evaluate_sim(pairs_path, out, variants, cfg, **common)
        click.echo(json.dumps(results, indent=2) if as_json else format_results(results))

    return eval_cmd


sim.builders = {"eval": make_eval_command}
