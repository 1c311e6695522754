"""``hralign policy train|eval``: thin wrappers over :mod:`hralign.policy`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import click

from hralign.cli.gr1 import GR1_ONLY, gr1_configs, gr1_options, given, split_gr1
from hralign.cli.options import dataclass_options, resume_options, saved_options
from hralign.device import DeviceConfig
from hralign.errors import HRAlignError
from hralign.policy.config import TrainConfig

# Import-light: the policy package (torch) is imported inside the commands so `--help` is fast.
_MODEL_FIELDS_SKIP = ("head",)


def _model_options(func: Callable) -> Callable:
    """One option per field of LatentPolicyConfig (a superset of BCConfig), default None = the class's."""
    from hralign.policy.config import BCConfig, LatentPolicyConfig

    bc_defaults = {f.name: f.default for f in dataclasses.fields(BCConfig)}
    for f in reversed(dataclasses.fields(LatentPolicyConfig)):
        if f.name in _MODEL_FIELDS_SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        default_txt = f"default {f.default}" if bc_defaults.get(f.name, f.default) == f.default or f.name not in bc_defaults \
            else f"default bc {bc_defaults[f.name]}, latent {f.default}"
        help_text = f"{f.metadata.get('help', '')} [{default_txt}]"
        if f.type in (bool, "bool"):
            func = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)(func)
        else:
            typ = {"int": int, "str": str, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            func = click.option(flag, f.name, type=typ, default=None, help=help_text)(func)
    return func


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


@click.group("policy")
def policy() -> None:
    """Train and evaluate policies on (adapted) encoder features.

    \b
    Example:
      hralign policy train --pairs demo/pairs.h5 --encoder r3m-resnet18 \\
          --adapter runs/demo/adapter --head bc --out runs/policy_bc
      hralign policy eval --pairs demo/pairs.h5 --policy runs/policy_bc
    """


@policy.command("train")
@click.option("--pairs", "pairs_path", required=True, type=click.Path(dir_okay=False), help="Pairs file (HDF5).")
@_encoder_options(required=True)
@click.option("--head", type=click.Choice(["bc", "continuous", "binned"]), default="bc", show_default=True,
              help="bc: R3M's MSE baseline; continuous: GR-1 smooth-L1 + gripper BCE; binned: LAPA 256 quantile bins.")
@click.option("--lam", default=None, type=click.Path(file_okay=False),
              help="LAM dir (hralign lam train): label every clip, then train the latent policy + action head.")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="labels.h5 from `hralign lam label`: train the latent policy + action head on it.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Policy directory to write.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@click.option("--kind", type=click.Choice(["bc", "latent", "gr1"]), default=None,
              help="Policy kind (default: latent with --lam/--labels, else bc); gr1: GR-1-style causal transformer "
                   "over the last --history steps, stage 1 on human clips (--pretrain-steps), stage 2 on robot demos; "
                   "training options not given take GR-1's defaults (--batch-size 64 windows, --lr 3e-4, "
                   "--weight-decay 1e-2).")
@_model_options
@dataclass_options(TrainConfig)
@gr1_options
@click.pass_context
def train_cmd(ctx: click.Context, pairs_path: str, encoder: str, weights: str | None, adapter: str | None, image_size: int | None,
              trust_checkpoint: bool, head: str, lam: str | None, labels: str | None, out: str, progress: bool,
              kind: str | None, **options: Any) -> None:
    """Train a BC policy, or (with --lam/--labels) a latent-action policy + robot action head.

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
    from hralign.policy import BCConfig, EncoderSource, LatentPolicyConfig, train_policy

    if kind is None and saved_options({"out": out, **options}).get("kind") == "gr1":
        kind = "gr1"  # `--resume` of a GR-1 run without --kind: the run's kind, like its other options
    gr1_given = split_gr1(options)
    if kind == "gr1":
        _train_gr1(ctx, pairs_path, encoder, weights, adapter, image_size, trust_checkpoint, head, lam, labels, out,
                   progress, {**options, **dict.fromkeys(GR1_ONLY), **gr1_given})
        return
    if gr1_given:
        raise HRAlignError(f"{', '.join('--' + n.replace('_', '-') for n in sorted(gr1_given))} only apply to "
                           "--kind gr1")
    if kind == "latent" and lam is None and labels is None:
        raise HRAlignError("--kind latent needs LAM labels: pass --labels labels.h5 or --lam DIR")
    if kind == "bc" and (lam is not None or labels is not None):
        raise HRAlignError("--lam/--labels train a latent policy; drop them or use --kind latent")
    # with --resume, options not given on the command line come from the run (docs/training.md)
    given_all = resume_options(ctx, {"encoder": encoder, "weights": weights, "adapter": adapter, "image_size": image_size,
                                     "trust_checkpoint": trust_checkpoint, "head": head, "lam": lam, "labels": labels,
                                     "out": out, **options})
    encoder, weights, adapter, image_size, trust_checkpoint, head, lam, labels = (
        given_all.pop(k) for k in ("encoder", "weights", "adapter", "image_size", "trust_checkpoint", "head", "lam",
                                   "labels"))
    options = {k: v for k, v in given_all.items() if k != "out"}
    if lam is not None and labels is not None:
        raise HRAlignError("pass either --lam or --labels, not both")
    latent = lam is not None or labels is not None
    if latent and head == "bc":
        raise HRAlignError("--head bc is the R3M baseline on features alone; with --lam/--labels use --head "
                           "continuous or binned")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    tcfg = TrainConfig(**{k: v for k, v in options.items() if k in train_fields})
    cls = LatentPolicyConfig if latent else BCConfig
    model_fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if k not in train_fields and v is not None}
    ignored = sorted(set(given) - model_fields)
    if ignored:
        raise HRAlignError(f"{', '.join('--' + n.replace('_', '-') for n in ignored)} only apply to the latent policy "
                           "(--lam/--labels)")
    cfg = cls(head=head, **given)
    source = EncoderSource(encoder=encoder, weights=weights, adapter=adapter, image_size=image_size,
                           trust_checkpoint=trust_checkpoint)
    summary = train_policy(pairs_path, source, out, cfg, tcfg, labels=labels, lam=lam, progress=progress)
    if not summary:  # not the main process of a multi-process run
        return
    click.echo(f"wrote {summary['out']} ({summary['kind']} policy, head {head}; "
               f"{summary['robot_action_clips']} robot clips / {summary['robot_action_frames']} frames with actions)")
    for stage, logs in summary["final"].items():
        click.echo(f"  {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))


def _train_gr1(ctx: click.Context, pairs_path: str, encoder: str, weights: str | None, adapter: str | None,
               image_size: int | None, trust_checkpoint: bool, head: str, lam: str | None, labels: str | None, out: str,
               progress: bool, options: dict[str, Any]) -> None:
    from hralign.policy import EncoderSource
    from hralign.policy.gr1.train import train_gr1

    if lam is not None or labels is not None:
        raise HRAlignError("--lam/--labels train a latent policy; --kind gr1 pretrains on human clips itself")
    if given(ctx, "head") and head != "continuous":
        raise HRAlignError(f"--head {head}: --kind gr1 uses GR-1's heads (smooth-L1 arm + BCE gripper, i.e. "
                           "continuous); drop --head")
    # with --resume, options not given on the command line come from the run (docs/training.md)
    saved = saved_options({"out": out, **options})
    given_all = resume_options(ctx, {"encoder": encoder, "weights": weights, "adapter": adapter, "image_size": image_size,
                                     "trust_checkpoint": trust_checkpoint, "out": out, **options})
    encoder, weights, adapter, image_size, trust_checkpoint = (
        given_all.pop(k) for k in ("encoder", "weights", "adapter", "image_size", "trust_checkpoint"))
    options = {k: v for k, v in given_all.items() if k != "out"}
    cfg, tcfg = gr1_configs(ctx, options, also=frozenset(saved))
    source = EncoderSource(encoder=encoder, weights=weights, adapter=adapter, image_size=image_size,
                           trust_checkpoint=trust_checkpoint)
    summary = train_gr1(pairs_path, source, out, cfg, tcfg, progress=progress)
    if not summary:  # not the main process of a multi-process run
        return
    click.echo(f"wrote {summary['out']} (gr1 policy, history {cfg.history}, chunk {cfg.chunk}; "
               f"{summary['robot_action_clips']} robot clips / {summary['robot_windows']} windows with actions"
               + (f"; stage 1 on {summary['human_pretrain_clips']} human clips" if tcfg.pretrain_steps else "") + ")")
    for stage, logs in summary["final"].items():
        click.echo(f"  {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))


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
    from hralign.policy import EncoderSource, evaluate_policy

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
