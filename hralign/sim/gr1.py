"""GR-1 in the MetaWorld closed loop: moved to :mod:`hralign.policy.gr1.demos` (GR-1's ``fit_demos`` hook);
the names stay importable from here for the benchmarks.
"""

from __future__ import annotations

from hralign.policy.gr1.demos import clip_data, gr1_demo_mse, train_sim_gr1

__all__ = ["clip_data", "gr1_demo_mse", "train_sim_gr1"]
