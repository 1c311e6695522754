"""The three disjoint MetaWorld task sets of the v2 benchmark (HR-Align's Ego4D / RH20T / RLBench roles).

* ``pretrain``: human-view clips only, the corpus the base is pretrained on (Ego4D's role);
* ``pair``: paired human/robot clips the adapters are trained on (RH20T's role);
* ``eval``: held-out tasks the policies are trained and rolled out on (RLBench's role), chosen to
  need vision (proprio-only BC fails, image BC succeeds; docs/sim.md).

The defaults were chosen by measurement (docs/sim.md "v2 task sets"): every pretraining and pair
task's noisy scripted expert succeeded in 5 of 5 probe episodes; push-like tasks (push-back,
push-wall, sweep) are left out of pretraining and pairs so the evaluation tasks stay unseen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hralign.errors import HRAlignError

ROLES = ("pretrain", "pair", "eval")

PRETRAIN_TASKS = ("assembly", "basketball", "box-close", "button-press", "button-press-wall", "coffee-button",
                  "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-unlock",
                  "drawer-close", "drawer-open", "faucet-close", "faucet-open", "hammer", "handle-press", "handle-pull",
                  "lever-pull", "peg-unplug-side")
PAIR_TASKS = ("pick-place", "door-open", "button-press-topdown", "plate-slide")
EVAL_TASKS = ("push", "sweep-into")


def _names(value: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.strip().removesuffix("-v3") for v in value if v.strip())


@dataclass
class TaskSets:
    """Pretraining, pair and evaluation tasks; disjoint (an overlap is refused with the tasks named)."""

    pretrain: tuple[str, ...] | str = field(default=PRETRAIN_TASKS, metadata={
        "help": "Tasks of the human-video corpus (human views only), comma-separated."})
    pair: tuple[str, ...] | str = field(default=PAIR_TASKS, metadata={
        "help": "Tasks of the paired human/robot clips the adapters train on, comma-separated."})
    eval: tuple[str, ...] | str = field(default=EVAL_TASKS, metadata={
        "help": "Held-out evaluation tasks (vision-dependent), comma-separated."})

    def __post_init__(self) -> None:
        for role in ROLES:
            names = _names(getattr(self, role))
            if not names:
                raise HRAlignError(f"--{role}-tasks: empty; expected at least one MetaWorld task")
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise HRAlignError(f"--{role}-tasks: lists {', '.join(dup)} more than once")
            setattr(self, role, names)
        for a, b in (("eval", "pair"), ("eval", "pretrain"), ("pair", "pretrain")):
            both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if both:
                raise HRAlignError(f"--{a}-tasks and --{b}-tasks overlap on {', '.join(both)}; the three task sets "
                                   "must be disjoint (evaluation tasks unseen in pretraining and pairs)")

    def check_known(self) -> None:
        """Every name is a MetaWorld task with a scripted expert (the error lists the valid ones)."""
        from hralign.sim.env import env_name

        for role in ROLES:
            for t in getattr(self, role):
                try:
                    env_name(t)
                except HRAlignError as e:
                    raise HRAlignError(f"--{role}-tasks: {e}".replace("--tasks: ", "")) from None

    def to_dict(self) -> dict[str, list[str]]:
        return {role: list(getattr(self, role)) for role in ROLES}


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two ``TaskSets.to_dict()`` (for a resume that changed them), one phrase per role."""
    out = []
    for role in ROLES:
        a, b = list(old.get(role, [])), list(new.get(role, []))
        if a == b:
            continue
        added, removed = [t for t in b if t not in a], [t for t in a if t not in b]
        parts = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
        out.append(f"{role} tasks: " + ("; ".join(parts) if parts else "reordered"))
    return out
