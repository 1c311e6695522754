"""Success rates with confidence intervals: a paired bootstrap over rollout goals and training seeds.

Every row of the benchmark is rolled out on the same goals with the same BC seeds, so a row's
outcomes form a [seeds, goals] 0/1 matrix aligned with every other row's. Resampling goals and
seeds with replacement (the same draw for every row) gives intervals for each row's success and,
paired, for the difference of two rows: the goal-to-goal and seed-to-seed variation that both rows
share cancels in the difference. numpy's generator does the resampling; scipy's ``bootstrap`` is
not used because it resamples one axis, and here two axes (goals and seeds) are drawn jointly.
"""

from __future__ import annotations

import math
from typing import Any
from statistics import NormalDist

import numpy as np

from hralign.errors import HRAlignError


def _check(outcomes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = {k: np.asarray(v, np.float64) for k, v in outcomes.items()}
    shapes = {k: a.shape for k, a in arrays.items()}
    if not arrays or len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise HRAlignError(f"paired bootstrap: every row needs the same [seeds, goals] outcome matrix; got {shapes}")
    return arrays


def _percentiles(confidence: float) -> list[float]:
    return [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]


def _replicates(arrays: dict[str, np.ndarray], si: np.ndarray, gi: np.ndarray) -> dict[str, np.ndarray]:
    """Bootstrap replicate means per row: seeds ``si`` and goals ``gi`` ([samples, n]) drawn once for every row."""
    boot: dict[str, np.ndarray] = {}
    for k, a in arrays.items():
        # mean over a resampled set of seeds and goals = mean of a[si][:, :, gi] without building it
        rows = a[si]  # (samples, n_seeds, n_goals)
        boot[k] = np.take_along_axis(rows, gi[:, None, :].repeat(si.shape[1], 1), axis=2).mean(axis=(1, 2))
    return boot


def outcome_matrix(row: dict[str, Any], tasks: list[str] | tuple[str, ...]) -> np.ndarray:
    """[seeds, goals] 0/1 outcomes of an evaluated row (``per_seed`` records; goals of every task concatenated,
    task by task, seeds in order)."""
    per_seed = sorted(row["per_seed"], key=lambda r: r["seed"])
    return np.array([[g for t in tasks for g in r["per_goal"][t]] for r in per_seed], np.float64)


def _bootstrap_replicates(outcomes: dict[str, np.ndarray], samples: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Row -> [samples] replicate mean successes, goals and seeds resampled jointly (one draw for every row)."""
    arrays = _check(outcomes)
    n_seeds, n_goals = next(iter(arrays.values())).shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, n_seeds, size=(samples, n_seeds))  # seeds before goals: the draws of every result so far
    return _replicates(arrays, si, rng.integers(0, n_goals, size=(samples, n_goals)))


def paired_bootstrap(outcomes: dict[str, np.ndarray], reference: str | None = None, samples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean success and percentile CI per row, and (with ``reference``) the paired difference to it.

    ``outcomes``: row -> [seeds, goals] array of 0/1 (the same goals and seeds in every row).
    Returns row -> {mean, lo, hi} and, for rows other than the reference, {diff, diff_lo, diff_hi}.
    """
    arrays = _check(outcomes)
    if reference is not None and reference not in arrays:
        raise HRAlignError(f"paired bootstrap: reference row {reference!r} not among {', '.join(arrays)}")
    boot = _bootstrap_replicates(arrays, samples, seed)
    q = _percentiles(confidence)
    out: dict[str, dict[str, float]] = {}
    for k, a in arrays.items():
        lo, hi = np.percentile(boot[k], q)
        out[k] = {"mean": float(a.mean()), "lo": float(lo), "hi": float(hi)}
        if reference is not None and k != reference:
            d = boot[k] - boot[reference]
            dlo, dhi = np.percentile(d, q)
            out[k].update(diff=float(a.mean() - arrays[reference].mean()), diff_lo=float(dlo), diff_hi=float(dhi))
    return out


def draw_gap(first: dict[str, np.ndarray], second: dict[str, np.ndarray], reference: str | None = None,
             samples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """How far two draws of the same benchmark (two collect seeds: new demos, pairs and corpus) disagree.

    Both draws are row -> [seeds, goals] on the **same goals** (the rollout goals come from the eval
    seed, not the collect seed). Goals are resampled jointly (goal j is the same goal in both draws)
    and seeds independently per draw (draw two's BC seed k trained on other demos than draw one's).
    Returns, per row present in both, ``gap`` = second - first success with its interval and, with
    ``reference``, ``diff_gap``: how much the row's difference to the reference moved between draws.
    An interval that includes 0 means the two draws agree within their own rollout and seed noise.
    """
    a, b = _check(first), _check(second)
    rows = [k for k in a if k in b]
    if not rows:
        raise HRAlignError(f"draw gap: no row in both draws (first: {', '.join(a)}; second: {', '.join(b)})")
    (sa, ga), (sb, gb) = a[rows[0]].shape, b[rows[0]].shape
    if ga != gb:
        raise HRAlignError(f"draw gap: the draws have {ga} and {gb} goals; expected the same goals in both")
    if reference is not None and reference not in rows:
        raise HRAlignError(f"draw gap: reference row {reference!r} not in both draws ({', '.join(rows)})")
    rng = np.random.default_rng(seed)
    gi = rng.integers(0, ga, size=(samples, ga))
    boot_a = _replicates({k: a[k] for k in rows}, rng.integers(0, sa, size=(samples, sa)), gi)
    boot_b = _replicates({k: b[k] for k in rows}, rng.integers(0, sb, size=(samples, sb)), gi)
    q = _percentiles(confidence)
    out: dict[str, dict[str, float]] = {}
    for k in rows:
        lo, hi = np.percentile(boot_b[k] - boot_a[k], q)
        out[k] = {"gap": float(b[k].mean() - a[k].mean()), "lo": float(lo), "hi": float(hi)}
        if reference is not None and k != reference:
            moved = (boot_b[k] - boot_b[reference]) - (boot_a[k] - boot_a[reference])
            dlo, dhi = np.percentile(moved, q)
            out[k].update(diff_gap=float((b[k].mean() - b[reference].mean()) - (a[k].mean() - a[reference].mean())),
                          diff_gap_lo=float(dlo), diff_gap_hi=float(dhi))
    return out


def rollouts_for_difference(delta: float = 0.10, discordant: float = 0.30, alpha: float = 0.05,
                            power: float = 0.80) -> int:
    """Paired rollouts needed to resolve a success difference ``delta`` between two rows.

    Per paired rollout the difference is +1, 0 or -1; with ``discordant`` the share of goals where
    the rows disagree its variance is discordant - delta^2, and a two-sided test at ``alpha``
    with ``power`` needs n = (z_{1-alpha/2} + z_power)^2 x variance / delta^2 (the normal
    approximation of McNemar's test; Connor 1987).
    """
    if not 0 < delta <= discordant <= 1:
        raise HRAlignError(f"rollouts_for_difference: need 0 < delta ({delta}) <= discordant ({discordant}) <= 1")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return int(math.ceil(z * z * (discordant - delta * delta) / (delta * delta)))


def discordant_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of (seed, goal) cells where two rows' outcomes differ (input of :func:`rollouts_for_difference`)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise HRAlignError(f"discordant_share: shapes {a.shape} and {b.shape} differ")
    return float((a != b).mean())
