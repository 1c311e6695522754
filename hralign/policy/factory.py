"""The built-in policy kinds and the functions every command calls: train, evaluate, fit on demos.

Callers (``hralign policy train|eval``, ``hralign sim eval``, the benchmarks) go through these and
:func:`hralign.policy.registry.make_policy`; none branches on a kind's name. A hook a kind left
``None`` is the per-frame default (:func:`~hralign.policy.train.train_frame_policy`,
:func:`~hralign.policy.evaluate.evaluate_frame_policy`, :func:`~hralign.policy.demos.fit_frame_demos`,
:func:`~hralign.policy.demos.frame_demo_error`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hralign.device import DeviceConfig, resolve
from hralign.policy.bc import BCPolicy
from hralign.policy.config import BCConfig, LatentPolicyConfig, TrainConfig
from hralign.policy.demos import (DemoSet, DemoTraining, fit_frame_demos, fit_latent_demos, frame_demo_error,
                                  latent_demo_clips, no_demo_error)
from hralign.policy.evaluate import evaluate_frame_policy
from hralign.policy.gr1.config import GR1Config, GR1TrainConfig
from hralign.policy.gr1.demos import fit_gr1_demos, gr1_demo_clips, gr1_demo_error
from hralign.policy.gr1.evaluate import evaluate_gr1
from hralign.policy.gr1.model import GR1Policy
from hralign.policy.gr1.train import train_gr1
from hralign.policy.io import EncoderSource, load_policy
from hralign.policy.labels import TokenLabels
from hralign.policy.latent import LatentPolicy
from hralign.errors import HRAlignError
from hralign.policy.registry import POLICY_KINDS, PolicyKind, get_policy_kind, kind_of, register_policy
from hralign.policy.train import train_frame_policy

register_policy(PolicyKind("bc", BCConfig, BCPolicy))
# In closed loop the latent policy reads one frame and no instruction (what a rollout step feeds) and
# trains its trunk in the action stage, as LAPA fine-tunes its whole model (hralign.sim.latent).
LATENT_CLOSED_LOOP = {"head": "continuous", "gripper_dims": "none", "context_frames": 1, "instruction": False,
                      "proprio": True, "finetune_trunk": True}
register_policy(PolicyKind("latent", LatentPolicyConfig, LatentPolicy, inputs=("labels", "lam"),
                           fit_demos=fit_latent_demos, demo_error=no_demo_error, demo_clips=latent_demo_clips,
                           early_stopping=False, closed_loop_defaults=LATENT_CLOSED_LOOP))
register_policy(PolicyKind("gr1", GR1Config, GR1Policy, train_config_class=GR1TrainConfig, train=train_gr1,
                           evaluate=evaluate_gr1, fit_demos=fit_gr1_demos, demo_error=gr1_demo_error,
                           demo_clips=gr1_demo_clips, closed_loop_defaults={"gripper_dims": "none"}))


def train_config_class(kind: PolicyKind) -> type:
    """The kind's training config class (:class:`TrainConfig` unless it declares its own)."""
    return kind.train_config_class or TrainConfig


def train_policy(pairs_path: str | Path, source: EncoderSource, out: str | Path, config: Any,
                 train: Any | None = None, labels: str | Path | TokenLabels | None = None,
                 lam: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Train a policy of ``config``'s registered kind into ``out`` (config.json, model.safetensors, metrics.jsonl).

    Parameters
    ----------
    pairs_path : path
        Pairs file; robot clips must have ``/robot/actions``.
    source : EncoderSource
        Encoder (+ adapter) whose frozen features the policy reads.
    out : path
        Policy directory, read back by :func:`evaluate_policy` and :func:`hralign.policy.load_policy`.
    config : a registered kind's config (BCConfig, LatentPolicyConfig, GR1Config, a plug-in's)
    train : the kind's training config (default its class's defaults)
    labels, lam : inputs of the kinds that take them (the latent policy: LAM labels or a LAM dir)
    resume, overwrite : bool
        Shortcuts for ``train.resume`` / ``train.overwrite``.

    Returns the kind's summary (clip counts, final losses, output path); ``{}`` on the processes
    other than the main one under a launcher.
    """
    kind = kind_of(config)
    inputs = {k: v for k, v in (("labels", labels), ("lam", lam)) if v is not None}
    check_inputs(kind, inputs)
    train = train if train is not None else train_config_class(kind)()
    return (kind.train or train_frame_policy)(pairs_path, source, out, config, train, resume=resume,
                                              overwrite=overwrite, progress=progress, **inputs)


def check_inputs(kind: PolicyKind, inputs: dict[str, Any]) -> None:
    """Inputs (``--labels``, ``--lam``) given to a kind that does not take them: a one-line error naming the kinds that do."""
    extra = sorted(set(inputs) - set(kind.inputs))
    if extra:
        takers = [k.name for k in POLICY_KINDS.values() if set(extra) <= set(k.inputs)]
        raise HRAlignError(f"{'/'.join('--' + e for e in extra)} train {' or '.join('--kind ' + t for t in takers) or 'no kind'}"
                           f"; drop them for --kind {kind.name}")


def evaluate_policy(policy_dir: str | os.PathLike, pairs_path: str | os.PathLike,
                    source: EncoderSource | None = None, labels: str | os.PathLike | TokenLabels | None = None,
                    progress: bool = False, devices: DeviceConfig | None = None) -> dict[str, Any]:
    """Held-out figures of the saved policy in ``policy_dir`` on ``pairs_path``, by its kind's ``evaluate`` hook.

    ``source`` overrides the encoder recorded in the policy (its feature dim must match);
    ``labels`` overrides the labels.h5 recorded at training time (latent policies); ``devices`` is
    where the encoder pass runs (``--device`` / ``--precision``).
    """
    placement = resolve(devices)
    policy, meta = load_policy(policy_dir)
    kind = get_policy_kind(policy.name, str(Path(policy_dir) / "config.json"))
    return (kind.evaluate or evaluate_frame_policy)(policy, meta, policy_dir, pairs_path, source, labels=labels,
                                                    progress=progress, placement=placement)


def fit_demos(config: Any, demos: DemoSet, training: DemoTraining) -> tuple[nn.Module, dict[str, Any],
                                                                           torch.Tensor | None]:
    """Train a policy of ``config``'s kind on cached demos; (policy in eval mode, last logs per stage,
    instruction embeddings [K, E] it acts with or None)."""
    kind = kind_of(config)
    policy, finals, instructions = (kind.fit_demos or fit_frame_demos)(config, demos, training)
    return policy.eval(), finals, instructions


def demo_error(policy: nn.Module, demos: DemoSet, instructions: torch.Tensor | None) -> float | None:
    """Action MSE of ``policy`` on the demo frames it trained on (None where its kind does not measure it)."""
    kind = get_policy_kind(policy.name)
    return (kind.demo_error or frame_demo_error)(policy, demos, instructions)


def demo_clips(kind: PolicyKind, options: dict[str, Any], pairs: Any, clips: dict[str, Any]) -> dict[str, Any]:
    """Every clip whose features ``kind``'s ``fit_demos`` reads (the demos and, for some, all human clips)."""
    return kind.demo_clips(options, pairs, clips) if kind.demo_clips is not None else dict(clips)
