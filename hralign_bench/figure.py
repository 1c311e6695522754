"""The v2 benchmark's figure: success and its 95% interval per row and protocol, from a results file.

One panel per protocol, one point with its interval per row (the paired-bootstrap interval of
:func:`hralign.sim.stats.paired_bootstrap` that the table prints), rows in the table's order and
on the same axis in every panel, so a row reads across protocols. Drawn with matplotlib's
object-oriented ``Figure`` (no pyplot, no backend switch) and written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hralign.atomic import atomic_path
from hralign.errors import HRAlignError

FIGURE_FILE = "results.png"
SOURCES = ("results.json", "results_partial.json")  # a finished run's own results first


def success_intervals(results: dict[str, Any], source: str = "results") -> dict[str, dict[str, dict[str, float]]]:
    """protocol -> row -> {mean, lo, hi} from a v2 results dict (``stats[protocol]["bootstrap"]``).

    ``source`` names the results in the error a malformed dict raises.
    """
    protocols = results.get("protocols") if isinstance(results, dict) else None
    stats = results.get("stats") if isinstance(results, dict) else None
    if not isinstance(protocols, list) or not protocols or not isinstance(stats, dict):
        raise HRAlignError(f"{source}: no `protocols` list with `stats`; expected the results.json of "
                           "`hralign bench metaworld-v2` (or its --report's results_partial.json)")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p in protocols:
        boot = stats.get(p, {}).get("bootstrap") if isinstance(stats.get(p), dict) else None
        if not isinstance(boot, dict) or not boot:
            raise HRAlignError(f"{source}: protocol {p!r} has no `stats.{p}.bootstrap` rows; expected row -> "
                               "{mean, lo, hi}")
        for row, b in boot.items():
            if not (isinstance(b, dict) and all(isinstance(b.get(k), (int, float)) for k in ("mean", "lo", "hi"))):
                raise HRAlignError(f"{source}: `stats.{p}.bootstrap[{row!r}]` is {b!r}; expected numbers mean, lo, hi")
        out[p] = {row: {k: float(b[k]) for k in ("mean", "lo", "hi")} for row, b in boot.items()}
    return out


def plot_success(results: dict[str, Any], path: str | Path, source: str = "results"):
    """Draw success [95% CI] per row and protocol into ``path`` (PNG); returns the matplotlib ``Figure``.

    Every (row, protocol) with a result is one ``errorbar`` (one container on its panel's axes);
    a row missing under a protocol (the oracle outside ``transfer``) is left empty there.
    """
    from matplotlib.figure import Figure  # object-oriented API: no pyplot, no backend switch

    cells = success_intervals(results, source)
    protocols = list(cells)
    rows: list[str] = []
    for p in protocols:
        rows += [r for r in cells[p] if r not in rows]
    fig = Figure(figsize=(2.2 + 2.6 * len(protocols), 0.9 + 0.32 * len(rows)))
    axes = fig.subplots(1, len(protocols), sharey=True, squeeze=False)[0]
    y = {r: len(rows) - 1 - i for i, r in enumerate(rows)}  # first row on top, as in the table
    for ax, p in zip(axes, protocols):
        for r, b in cells[p].items():
            err = [[b["mean"] - b["lo"]], [b["hi"] - b["mean"]]]
            ax.errorbar([b["mean"]], [y[r]], xerr=err, fmt="o", color="C0" if r != "frozen" else "C3",
                        ms=4, capsize=2, label=r)
        if "frozen" in cells[p]:
            ax.axvline(cells[p]["frozen"]["mean"], color="C3", lw=0.6, ls=":")
        ax.set_title(p, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("success [95% CI]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(list(y.values()), list(y))
    axes[0].set_ylim(-0.6, len(rows) - 0.4)
    title = results.get("title") or "MetaWorld v2: held-out evaluation tasks"
    fig.suptitle(title + (" (partial)" if results.get("partial") else ""), fontsize=9)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})  # same bytes on every machine
    return fig


def figure_from_run(out: str | Path, path: str | Path | None = None) -> Path:
    """Draw ``out``'s figure from its committed results (``results.json``, else ``results_partial.json``)
    into ``path`` (default ``out/results.png``); nothing is run. Returns the figure's path."""
    out = Path(out)
    found = next((out / name for name in SOURCES if (out / name).is_file()), None)
    if found is None:
        raise HRAlignError(f"--out {out}: no {' or '.join(SOURCES)}; expected a `hralign bench metaworld-v2` "
                           "directory with a finished run or a --report")
    try:
        results = json.loads(found.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HRAlignError(f"{found}: not JSON ({e.__class__.__name__}: {e}); expected the results of "
                           "`hralign bench metaworld-v2`") from None
    target = Path(path) if path is not None else out / FIGURE_FILE
    plot_success(results, target, source=str(found))
    return target


__all__ = ["FIGURE_FILE", "figure_from_run", "plot_success", "success_intervals"]
