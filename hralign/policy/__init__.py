"""Policies on (adapted) encoder features: R3M's BC baseline, the LAPA/IGOR latent-action policy, the
GR-1-style transformer, robot action heads, training and offline evaluation, behind one registry.

Every kind is a config class and a policy class registered under its name
(:mod:`hralign.policy.registry`); :func:`make_policy`, :func:`train_policy`, :func:`evaluate_policy`
and :func:`fit_demos` are what callers use, whatever the kind.

>>> from hralign.policy import BCConfig, TrainConfig, EncoderSource, train_policy, evaluate_policy
>>> train_policy("demo.h5", EncoderSource("runs/demo/adapter"), "policy/", BCConfig(head="continuous"))
>>> evaluate_policy("policy/", "demo.h5")["action"]["l1_mean"]
"""

from __future__ import annotations

from hralign.policy.bc import BCPolicy
from hralign.policy.config import ActionConfig, BCConfig, LatentPolicyConfig, TrainConfig
from hralign.policy.demos import DemoSet, DemoTraining
from hralign.policy.factory import demo_error, evaluate_policy, fit_demos, train_config_class, train_policy
from hralign.policy.heads import HEADS, ActionHead, BinnedHead, ContinuousHead, MSEHead, build_head, register_head
from hralign.policy.io import EncoderSource, load_policy, read_policy_meta, save_policy
from hralign.policy.labels import TokenLabels, load_token_labels
from hralign.policy.latent import LatentPolicy
from hralign.policy.registry import (POLICY_KINDS, PolicyKind, get_policy_kind, kind_of, load_plugins, make_policy,
                                     register_policy)

__all__ = [
    "HEADS", "POLICY_KINDS", "ActionConfig", "ActionHead", "BCConfig", "BCPolicy", "BinnedHead", "ContinuousHead",
    "DemoSet", "DemoTraining", "EncoderSource", "LatentPolicy", "LatentPolicyConfig", "MSEHead", "PolicyKind",
    "TokenLabels", "TrainConfig", "build_head", "demo_error", "evaluate_policy", "fit_demos", "get_policy_kind",
    "kind_of", "load_plugins", "load_policy", "load_token_labels", "make_policy", "read_policy_meta",
    "register_head", "register_policy", "save_policy", "train_config_class", "train_policy",
]
