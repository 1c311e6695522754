"""Sequential evaluation: roll out in rounds and stop a comparison once its answer is known.

A comparison is two rows evaluated on the same goals with the same training seeds (a *paired*
design: row ``a`` minus row ``b``). After each round ``k`` of ``K`` (the looks), the paired
difference gets an interval at level ``1 - alpha_k``, where the ``alpha_k`` are an **alpha-spending
schedule** that sums to ``alpha`` (Lan and DeMets' spending functions evaluated at the looks'
information fractions ``k / K``; ``SPENDING``): O'Brien-Fleming's spends almost nothing early and
keeps the last look near the fixed design's level, Pocock's spends about evenly, Bonferroni's exactly
evenly. Each look is tested at its own share, so by the union bound the chance of declaring a
difference at any look when there is none is at most ``alpha`` whatever the looks are (the exact
group-sequential boundaries, which account for the looks' correlation, would be a little narrower;
the union bound needs no numerical integration and is checked by simulation in
``benchmarks/sequential_check.py``). A comparison stops

* ``resolved`` when that interval excludes 0 (a difference is declared),
* ``precise`` when its half-width is below the target (no difference larger than the target is
  left to find; this stop declares nothing, so it does not add to the error rate),
* ``max`` when the preset's maximum is reached.

The interval (:func:`paired_interval`) treats both training seeds and goals as random: a
two-way random-effects variance of the paired differences with Student's t at Satterthwaite's
degrees of freedom, so 4 seeds whose policies differ widen it as much as they must. Two pseudo-goals
are added to both rows first, one where row ``a`` succeeds and ``b`` fails on every seed and one the
other way round (as Agresti and Caffo add pseudo-counts to paired proportions): without them a round
in which both rows failed every goal would give a zero-width interval and stop as ``precise`` on no
evidence. They pull the difference toward 0, so they make declaring a difference harder, never easier.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Hashable

import numpy as np
from scipy import stats as sps

from hralign.errors import HRAlignError

STOP_REASONS = ("resolved", "precise", "max")
ROUND_BY = ("goals", "seeds")


def _obrien_fleming(alpha: float, t: float) -> float:
    return 2 - 2 * NormalDist().cdf(NormalDist().inv_cdf(1 - alpha / 2) / math.sqrt(t))


def _pocock(alpha: float, t: float) -> float:
    return alpha * math.log(1 + (math.e - 1) * t)


def _bonferroni(alpha: float, t: float) -> float:
    return alpha * t


# alpha spent up to information fraction t (Lan & DeMets 1983): each look is tested at its increment
SPENDING: dict[str, Callable[[float, float], float]] = {"obrien-fleming": _obrien_fleming, "pocock": _pocock,
                                                        "bonferroni": _bonferroni}


@dataclass
class SequentialConfig:
    """How rollouts are run in rounds and when a comparison stops (see the module docstring)."""

    round_size: int = field(default=10, metadata={"help": "What each round adds: goals per task (--round-by goals; "
                                                          "the maximum is --rollouts) or BC seeds (--round-by seeds; "
                                                          "the maximum is --seeds); looks = ceil(maximum / round size)."})
    round_by: str = field(default="goals", metadata={
        "help": "goals: each round rolls every seed's policy out on more goals; seeds: each round trains more BC "
                "seeds, each rolled out on every goal (where seed-to-seed spread bounds what a cell resolves, "
                "goals alone cannot stop a comparison early)."})
    target_half_width: float = field(default=0.05, metadata={
        "help": "Stop a comparison whose interval's half-width falls below this (success-rate units, in (0, 1))."})
    alpha: float = field(default=0.05, metadata={"help": "Family-wise error of declaring a difference over all "
                                                         "looks, spent over the looks by --spending."})
    spending: str = field(default="obrien-fleming", metadata={
        "help": "Alpha-spending schedule over the looks: obrien-fleming (little early, the last look near the fixed "
                "design's level), pocock (about even) or bonferroni (even)."})

    def __post_init__(self) -> None:
        if isinstance(self.round_size, bool) or not isinstance(self.round_size, int) or self.round_size < 1:
            raise HRAlignError(f"--round-size: should be an integer >= 1 but the value passed is {self.round_size!r}")
        if not isinstance(self.target_half_width, (int, float)) or not 0 < float(self.target_half_width) < 1:
            raise HRAlignError(f"--target-half-width: should be in (0, 1) (success-rate units) but the value passed "
                               f"is {self.target_half_width!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 < float(self.alpha) < 1:
            raise HRAlignError(f"--alpha: should be in (0, 1) but the value passed is {self.alpha!r}")
        if self.spending not in SPENDING:
            raise HRAlignError(f"--spending: {self.spending!r}; expected one of {', '.join(SPENDING)}")
        if self.round_by not in ROUND_BY:
            raise HRAlignError(f"--round-by: {self.round_by!r}; expected one of {', '.join(ROUND_BY)}")

    def maximum(self, rollouts: int, seeds: int) -> tuple[int, str]:
        """(the most of what rounds add, its option): --rollouts goals per task or --seeds BC seeds."""
        return (rollouts, "--rollouts") if self.round_by == "goals" else (seeds, "--seeds")

    def look_alpha(self, look: int, looks: int) -> float:
        """The alpha tested at look ``look`` of ``looks``: the schedule's increment (they sum to ``alpha``)."""
        spend = SPENDING[self.spending]
        return spend(self.alpha, look / looks) - (spend(self.alpha, (look - 1) / looks) if look > 1 else 0.0)

    def looks(self, maximum: int, option: str = "--rollouts") -> int:
        """Number of looks for ``maximum`` goals per task (or seeds); a maximum below one round is refused."""
        if maximum < self.round_size:
            raise HRAlignError(f"{option} {maximum}: below one round of --round-size {self.round_size}; "
                               "the maximum must hold at least one round")
        return math.ceil(maximum / self.round_size)

    def upto(self, look: int, maximum: int) -> int:
        """Goals per task (or seeds) done after look ``look`` (1-based)."""
        return min(look * self.round_size, maximum)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(cfg: SequentialConfig, looks: int) -> str:
    """One line: the spending schedule and each look's interval level."""
    levels = ", ".join(f"{1 - cfg.look_alpha(k, looks):.4f}" for k in range(1, looks + 1))
    return f"{cfg.spending} spending of alpha {cfg.alpha} over {looks} looks, two-way t intervals at levels {levels}"


def paired_interval(a: np.ndarray, b: np.ndarray, level: float) -> dict[str, float]:
    """Difference ``a - b`` of two [seeds, goals] 0/1 matrices with a two-way random-effects t interval at ``level``.

    The paired differences ``d[s, g]`` vary with the training seed (each seed's policy is its own draw),
    with the goal (its difficulty) and by chance. Their mean's variance is estimated from the two-way
    mean squares, ``(MS_seed + MS_goal - MS_res) / (S G)`` (never below the largest single component),
    and the interval uses Student's t with Satterthwaite's degrees of freedom: with 4 seeds and a large
    seed effect they fall towards 3 and the interval widens as it must, with a negligible seed effect
    they grow with the goals. (A bootstrap over 4 resampled seeds cannot do this: in simulation its
    intervals declared 7% of null comparisons at one look's 98% level.) Pseudo-goals are added first
    (module docstring). Returns ``diff`` (the plain mean difference), ``lo``/``hi``, ``half_width``, ``df``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise HRAlignError(f"paired comparison: both rows need the same non-empty [seeds, goals] outcomes; "
                           f"got {a.shape} and {b.shape}")
    s, _ = a.shape
    d = np.hstack([a - b, np.ones((s, 1)), -np.ones((s, 1))])
    g = d.shape[1]
    m, seed_means, goal_means = d.mean(), d.mean(axis=1), d.mean(axis=0)
    terms = []  # (mean square, degrees of freedom)
    if s > 1:
        terms.append((g * float(((seed_means - m) ** 2).sum()) / (s - 1), s - 1))
    terms.append((s * float(((goal_means - m) ** 2).sum()) / (g - 1), g - 1))
    if s > 1:
        resid = d - seed_means[:, None] - goal_means[None, :] + m
        terms.append((float((resid ** 2).sum()) / ((s - 1) * (g - 1)), (s - 1) * (g - 1)))
        ms_seed, ms_goal, ms_res = (t[0] for t in terms)
        total = max(ms_seed + ms_goal - ms_res, ms_seed, ms_goal)
    else:
        total = terms[0][0]
    var = total / (s * g)
    df = total ** 2 / sum(ms ** 2 / k for ms, k in terms) if total > 0 else float(g - 1)
    half = float(sps.t.ppf(0.5 + level / 2, max(df, 1.0)) * math.sqrt(var))
    centre = float(m)
    return {"diff": float((a - b).mean()), "lo": centre - half, "hi": centre + half, "half_width": half, "df": df}


def decide(a: np.ndarray, b: np.ndarray, look: int, looks: int, cfg: SequentialConfig) -> dict[str, Any]:
    """The state of one comparison after look ``look`` of ``looks``: its interval and why it stops (or None)."""
    level = 1 - cfg.look_alpha(look, looks)
    iv = paired_interval(a, b, level)
    if iv["lo"] > 0 or iv["hi"] < 0:
        stop = "resolved"
    elif iv["half_width"] < cfg.target_half_width:
        stop = "precise"
    elif look >= looks:
        stop = "max"
    else:
        stop = None
    return {**iv, "level": level, "look": look, "rollouts": int(a.size), "stop": stop}


def replay(a: np.ndarray, b: np.ndarray, goals_per_task: int, tasks: int, cfg: SequentialConfig) -> dict[str, Any]:
    """Apply the rule to outcomes already collected: [seeds, tasks * goals_per_task] matrices in task-major order
    (task 0's goals, then task 1's), the first ``k * round_size`` goals of each task seen at look ``k``.

    How many rollouts the comparison would have needed, and its decision then.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.shape[1] != tasks * goals_per_task:
        raise HRAlignError(f"replay: outcomes {a.shape} / {b.shape} are not [seeds, {tasks} x {goals_per_task}]")
    looks = cfg.looks(goals_per_task)
    for k in range(1, looks + 1):
        n = cfg.upto(k, goals_per_task)
        cols = np.concatenate([np.arange(t * goals_per_task, t * goals_per_task + n) for t in range(tasks)])
        state = decide(a[:, cols], b[:, cols], k, looks, cfg)
        if state["stop"] is not None:
            return state
    raise AssertionError("unreachable: the last look always stops")


def comparisons_against(rows: list[Hashable] | tuple[Hashable, ...], reference: Hashable,
                        extra: list[tuple[Hashable, Hashable]] | tuple = ()) -> list[tuple[Hashable, Hashable]]:
    """Every row against ``reference``, then the ``extra`` pairs; a pair naming an unknown row is refused
    (a comparison must be paired: two rows of one evaluation, on the same goals and seeds)."""
    known = set(rows)
    if reference not in known:
        raise HRAlignError(f"sequential: reference row {reference!r} is not evaluated; rows: {', '.join(map(str, rows))}")
    for a, b in extra:
        missing = [r for r in (a, b) if r not in known]
        if missing or a == b:
            raise HRAlignError(f"sequential: comparison {a!r} vs {b!r} is not a paired comparison of two rows of this "
                               f"evaluation (rows: {', '.join(map(str, rows))})")
    pairs = [(r, reference) for r in rows if r != reference]
    return pairs + [p for p in extra if p not in pairs]


def run_rounds(run_round: Callable[[list[Hashable], int], dict[Hashable, np.ndarray]],
               comparisons: list[tuple[Hashable, Hashable]], cfg: SequentialConfig, maximum: int) -> dict[str, Any]:
    """Run rounds until every comparison has stopped; returns each comparison's final state and each row's rollouts.

    ``run_round(rows, upto)`` evaluates ``rows`` on the first ``upto`` goals per task (reusing what earlier
    rounds did) and returns row -> [seeds, goals] outcomes. A row keeps being evaluated while one of
    its comparisons is still open (the reference of several rows often longest).
    """
    looks = cfg.looks(maximum)
    open_pairs = list(dict.fromkeys(comparisons))
    states: dict[tuple[Hashable, Hashable], dict[str, Any]] = {}
    used: dict[Hashable, int] = {}
    for look in range(1, looks + 1):
        rows = list(dict.fromkeys(r for pair in open_pairs for r in pair))
        upto = cfg.upto(look, maximum)
        outcomes = run_round(rows, upto)
        for r in rows:
            used[r] = int(outcomes[r].size)
        for a, b in list(open_pairs):
            states[(a, b)] = decide(outcomes[a], outcomes[b], look, looks, cfg)
            if states[(a, b)]["stop"] is not None:
                open_pairs.remove((a, b))
        if not open_pairs:
            break
    return {"config": cfg.to_dict(), "looks": looks, "rule": describe(cfg, looks), "comparisons": [{"row": a, "reference": b, **st}
                                                                      for (a, b), st in states.items()],
            "rollouts": used}


def null_pair(rng: np.random.Generator, seeds: int, goals: int, success: float, seed_effect: float,
              spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Two rows' [seeds, goals] outcomes with the same expected success (the null model of :func:`simulate_null`)."""
    q = np.clip(rng.beta(spread * success, spread * (1 - success), size=goals), 1e-6, 1 - 1e-6)
    logit = np.log(q) - np.log1p(-q)
    return tuple((rng.random((seeds, goals)) < 1 / (1 + np.exp(-(logit[None] + rng.normal(0, seed_effect, (seeds, 1))))))
                 .astype(np.float64) for _ in range(2))


def simulate_null(comparisons: int, seeds: int, tasks: int, goals_per_task: int, cfg: SequentialConfig,
                  rng: np.random.Generator, success: float = 0.3, spread: float = 2.0, seed_effect: float = 0.5) -> dict[str, Any]:
    """Share of null comparisons (two rows with the same expected success) in which a difference is declared.

    Each goal has its own difficulty ``q_g ~ Beta(spread * success, spread * (1 - success))``, shared by both
    rows and every seed (outcomes are paired and correlated, as in a benchmark); each (row, seed) policy
    shifts it by ``N(0, seed_effect^2)`` on the logit scale (training seeds differ, equally in law for both
    rows); given those, outcomes are independent Bernoulli draws.
    """
    declared, used = 0, []
    for _ in range(comparisons):
        a, b = null_pair(rng, seeds, tasks * goals_per_task, success, seed_effect, spread)
        r = replay(a, b, goals_per_task, tasks, cfg)
        declared += r["stop"] == "resolved"
        used.append(r["rollouts"])
    rate = declared / comparisons
    half = 1.96 * math.sqrt(max(rate * (1 - rate), 1e-12) / comparisons)
    return {"comparisons": comparisons, "declared": declared, "rate": rate, "rate_lo": max(0.0, rate - half),
            "rate_hi": rate + half, "mean_rollouts": float(np.mean(used)),
            "max_rollouts": seeds * tasks * goals_per_task,
            "seed_effect": seed_effect, "success": success}


__all__ = ["ROUND_BY", "SPENDING", "STOP_REASONS", "SequentialConfig", "comparisons_against", "decide", "describe", "null_pair",
           "paired_interval", "replay", "run_rounds", "simulate_null"]
