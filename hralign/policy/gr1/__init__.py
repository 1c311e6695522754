"""GR-1-style policy (Wu et al., 2024): causal transformer over the last H steps, [ACT]/[OBS] queries,
stage 1 on human video (future prediction), stage 2 on robot demos; ACT chunks + temporal ensembling.

Split by job as the anchors do: ``config`` (no torch), ``model`` (the policy, its runner and the
ensembler), ``train`` (batches, forward, evaluation, the stage loop), ``evaluate`` (offline evaluation
of a saved policy directory), ``demos`` (training on cached demo features, ``sim eval --kind gr1``).
The kind is registered with its hooks in :mod:`hralign.policy.factory`; only config and model are
imported here.
"""

from __future__ import annotations

from hralign.policy.gr1.config import GR1Config, GR1TrainConfig
from hralign.policy.gr1.model import GR1Policy, GR1Runner, TemporalEnsembler, step_mask

__all__ = ["GR1Config", "GR1Policy", "GR1Runner", "GR1TrainConfig", "TemporalEnsembler", "step_mask"]
