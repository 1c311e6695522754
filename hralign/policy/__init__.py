"""Policies on (adapted) encoder features: R3M's BC baseline, the LAPA/IGOR latent-action policy,
robot action heads (GR-1 continuous, LAPA binned), training and offline evaluation.

>>> from hralign.policy import BCConfig, TrainConfig, EncoderSource, train_policy, evaluate_policy
>>> train_policy("demo.h5", EncoderSource("runs/demo/adapter"), "policy/", BCConfig(head="continuous"))
>>> evaluate_policy("policy/", "demo.h5")["action"]["l1_mean"]
"""

from __future__ import annotations

from hralign.policy.bc import BCPolicy
from hralign.policy.config import ActionConfig, BCConfig, LatentPolicyConfig, TrainConfig
from hralign.policy.evaluate import evaluate_policy
from hralign.policy.heads import HEADS, ActionHead, BinnedHead, ContinuousHead, MSEHead, build_head, register_head
from hralign.policy.io import EncoderSource, load_policy, read_policy_meta, save_policy
from hralign.policy.labels import TokenLabels, load_token_labels
from hralign.policy.latent import LatentPolicy
from hralign.policy.train import train_policy

__all__ = [
    "HEADS", "ActionConfig", "ActionHead", "BCConfig", "BCPolicy", "BinnedHead", "ContinuousHead", "EncoderSource",
    "LatentPolicy", "LatentPolicyConfig", "MSEHead", "TokenLabels", "TrainConfig", "build_head", "evaluate_policy",
    "load_policy", "load_token_labels", "read_policy_meta", "register_head", "save_policy", "train_policy",
]
