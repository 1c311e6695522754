"""``hralign policy train|eval``: thin wrappers over :mod:`hralign.policy`.

Every kind registered in :mod:`hralign.policy.registry` (plug-ins included) is trained by the same
``train`` command: its options come from the kind's config classes (:mod:`hralign.cli.kinds`), and
the library's factory trains it; nothing here branches on a kind's name.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from hralign.cli.kinds import KindGroup, kind_configs, kind_options
from hralign.cli.options import dataclass_options, resume_options, saved_options
from hralign.device import DeviceConfig
from hralign.errors import HRAlignError
from hralign.policy import (POLICY_KINDS, EncoderSource, evaluate_policy, get_policy_kind, train_config_class,
                            train_policy)
from hralign.policy.factory import check_inputs


def _encoder_options(required: bool) -> Callable:
    def deco(func: Callable) -> Callable:
        opts = [
            click.option("--encoder", required=required, default=None,
                         help="Encoder name (r3m-resnet18, timm:..., hf:DIR, lam:DIR) or saved encoder/adapter dir."
                         + ("" if required else " Default: the one recorded in the policy.")),
            click.option("--weights", default=None, type=click.Path(dir_okay=False),
                         help="Official checkpoint for a named encoder (R3M model.pt, ...)."),
            click.option("--adapter", default=None, type=click.Path(file_okay=False),
                         help="Adapter dir (hralign adapt's runs/X/adapter) applied to robot frames; human frames "
                              "use the frozen --encoder."),
            click.option("--image-size", type=int, default=None, help="Encoder input side override."),
            click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling of --weights (trusted files only)."),
        ]
        for opt in reversed(opts):
            func = opt(func)
        return func
    return deco


@click.group("policy", cls=KindGroup)
def policy() -> None:
    """Train and evaluate policies on (adapted) encoder features.

    \b
    Example:
      hralign policy train --pairs demo/pairs.h5 --encoder r3m-resnet18 \\
          --adapter runs/demo/adapter --head bc --out runs/policy_bc
      hralign policy eval --pairs demo/pairs.h5 --policy runs/policy_bc
    """


_INPUTS = ("lam", "labels")  # inputs some kinds take (PolicyKind.inputs): the latent policy's LAM labels


def _default_kind(kind: str | None, inputs: dict[str, Any], options: dict[str, Any], out: str) -> str:
    """--kind given; else the run's with --resume; else the kind that takes the inputs given (latent), else bc."""
    if kind is not None:
        return kind
    saved = saved_options({"out": out, **options}).get("kind")
    if saved is not None:
        return saved
    takers = [k.name for k in POLICY_KINDS.values() if inputs and set(inputs) <= set(k.inputs)]
    return takers[0] if takers else "bc"


def make_train_command() -> click.Command:
    """``policy train`` with one option per field of every registered kind (built after the plug-ins load)."""
    @click.command("train")
    @click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False), help="Pairs file (HDF5).")
    @_encoder_options(required=True)
    @click.option("--kind", default=None,
                  help=f"Policy kind: {', '.join(POLICY_KINDS)} (default: latent with --lam/--labels, else bc; with "
                       "--resume the run's). gr1: GR-1-style causal transformer over the last --history steps, stage 1 "
                       "on human clips (--pretrain-steps), stage 2 on robot demos. Options not given take the kind's "
                       "defaults (GR-1: --batch-size 64 windows, --weight-decay 1e-2, cosine schedule).")
    @click.option("--lam", default=None, type=click.Path(file_okay=False),
                  help="LAM dir (hralign lam train): label every clip, then train the latent policy + action head.")
    @click.option("--labels", default=None, type=click.Path(dir_okay=False),
                  help="labels.h5 from `hralign lam label`: train the latent policy + action head on it.")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Policy directory to write.")
    @click.option("--progress/--no-progress", default=True, help="Show progress bars.")
    @kind_options(train="all")
    @click.pass_context
    def train_cmd(ctx: click.Context, pairs_path: str, encoder: str, weights: str | None, adapter: str | None,
                  image_size: int | None, trust_checkpoint: bool, kind: str | None, lam: str | None,
                  labels: str | None, out: str, progress: bool, **options: Any) -> None:
        """Train a policy of any registered kind: BC, (with --lam/--labels) a latent-action policy + robot action
        head, GR-1 (--kind gr1), or a plug-in kind.

        \b
        Examples:
          # R3M-protocol BC on the adapted encoder, held-out split from the file
          hralign policy train --pairs demo/pairs.h5 --encoder r3m-resnet18 --adapter runs/demo/adapter \\
              --head bc --out runs/bc
          # latent policy on LAM labels of human + robot clips, action head on 20% of robot clips
          hralign policy train --pairs demo/pairs.h5 --encoder r3m-resnet18 --labels runs/lam/labels.h5 \\
              --head continuous --robot-fraction 0.2 --out runs/latent
          # GR-1-style: 4 steps of history, chunks of 3, stage 1 on human clips then stage 2 on robot demos
          hralign policy train --kind gr1 --pairs demo/pairs.h5 --encoder r3m-resnet18 --adapter runs/demo/adapter \\
              --history 4 --chunk 3 --pretrain-steps 1000 --steps 1500 --out runs/gr1
        """
        inputs = {k: v for k, v in (("lam", lam), ("labels", labels)) if v is not None}
        pk = get_policy_kind(_default_kind(kind, inputs, options, out))
        # with --resume, options not given on the command line come from the run (docs/training.md)
        given = resume_options(ctx, {"encoder": encoder, "weights": weights, "adapter": adapter,
                                     "image_size": image_size, "trust_checkpoint": trust_checkpoint, "lam": lam,
                                     "labels": labels, "out": out, **options})
        source = EncoderSource(**{k: given.pop(k) for k in ("encoder", "weights", "adapter", "image_size",
                                                            "trust_checkpoint")})
        inputs = {k: v for k in _INPUTS if (v := given.pop(k)) is not None}
        given.pop("out")
        if len(inputs) > 1:
            raise HRAlignError("pass either --lam or --labels, not both")
        check_inputs(pk, inputs)
        config, train_kwargs = kind_configs(pk, given)
        summary = train_policy(pairs_path, source, out, config, train_config_class(pk)(**train_kwargs),
                               progress=progress, **inputs)
        if not summary:  # not the main process of a multi-process run
            return
        click.echo(f"wrote {summary['out']} ({summary['kind']} policy; {summary['robot_action_clips']} robot clips / "
                   f"{summary['robot_action_frames']} frames with actions)")
        for stage, logs in summary["final"].items():
            click.echo(f"  {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))

    return train_cmd


policy.builders = {"train": make_train_command}


@policy.command("eval")
@click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False), help="Pairs file (HDF5).")
@click.option("--policy", "policy_dir", required=True, type=click.Path(file_okay=False),
              help="Policy directory from `hralign policy train`.")
@_encoder_options(required=False)
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="labels.h5 for latent-token accuracy (default: the one recorded at training).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@dataclass_options(DeviceConfig)
def eval_cmd(pairs_path: str, policy_dir: str, encoder: str | None, weights: str | None, adapter: str | None,
             image_size: int | None, trust_checkpoint: bool, labels: str | None, as_json: bool, device: str,
             precision: str) -> None:
    """Offline evaluation on held-out clips: action MSE / L1 per dim, latent-token accuracy per embodiment.

    \b
    Example:
      hralign policy eval --pairs demo/pairs.h5 --policy runs/latent
    """
    source = None
    if encoder is not None or adapter is not None:
        if encoder is None:
            raise HRAlignError("--adapter needs --encoder (the frozen base for human frames)")
        source = EncoderSource(encoder=encoder, weights=weights, adapter=adapter, image_size=image_size,
                               trust_checkpoint=trust_checkpoint)
    res = evaluate_policy(policy_dir, pairs_path, source=source, labels=labels, devices=DeviceConfig(device, precision))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"policy {policy_dir} ({res['kind']}), held-out clips: "
               + ", ".join(f"{d} {n}" for d, n in res["heldout_clips"].items()))
    if "action" in res:
        a = res["action"]
        click.echo(f"  action error on {a['frames']} frames of {a['clips']} robot clips: "
                   f"MSE {a['mse_mean']:.4g}, L1 {a['l1_mean']:.4g}")
        click.echo("    per dim MSE " + " ".join(f"{x:.4g}" for x in a["mse"]))
        click.echo("    per dim L1  " + " ".join(f"{x:.4g}" for x in a["l1"]))
    for d, c in (res.get("future_cosine") or {}).items():
        if c is not None:
            click.echo(f"  future-feature cosine {d} (t+{res.get('future_delta', '?')}): {c:.3f}")
    for d, r in (res.get("latent") or {}).items():
        if d == "skipped":
            click.echo(f"  latent tokens: skipped ({r})")
            continue
        click.echo(f"  latent-token accuracy {d}: {r['token_accuracy']:.3f} per token, {r['all_tokens_accuracy']:.3f} "
                   f"all tokens ({r['frames']} frames; majority-code rate {r['chance']:.3f})")
