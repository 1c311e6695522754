"""MetaWorld benchmark pieces (the optional ``[sim]`` extra): paired expert rollouts and closed-loop BC.

``collect`` renders scripted-expert episodes as a robot view and a re-skinned "human" view into one
pairs file; ``evaluate_sim`` trains R3M's BC head on a protocol's demos (transfer / few-shot /
robot) and runs it closed loop. metaworld and mujoco are imported only when an env is made.
"""

from __future__ import annotations

from hralign.sim.collect import CollectConfig, collect, content_hash, read_sim_meta
from hralign.sim.env import SimEnv, metaworld_available, require_metaworld
from hralign.sim.evaluate import PROTOCOLS, SimEvalConfig, evaluate_sim, format_results

__all__ = ["PROTOCOLS", "CollectConfig", "SimEnv", "SimEvalConfig", "collect", "content_hash", "evaluate_sim",
           "format_results", "metaworld_available", "read_sim_meta", "require_metaworld"]
