"""Two draws of the v2 benchmark side by side: is the table one draw, or does it hold across collect seeds?

A second collect seed redraws everything the table is built from (corpus, pairs, demos, hence the
base, the adapters and every BC fit) while the rollout goals stay the same (they come from the eval
seed). :func:`compare_draws` reads two run (or snapshot) directories of the same configuration and,
per protocol and row present in both, gives each draw's success, the pooled success (both draws'
seeds stacked: 2 x the seeds on the same goals, paired bootstrap as in one run), and the gap between
the draws with its interval (:func:`hralign.sim.stats.draw_gap`): a gap whose interval includes 0 is
within the noise of the rollouts and BC seeds; one that excludes it says the table depends on the draw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hralign.atomic import write_text_atomic
from hralign.errors import HRAlignError
from hralign.sim.stats import draw_gap, outcome_matrix, paired_bootstrap
from hralign_bench.tasksets import changes
from hralign_bench.v2 import LATENT_CONTROL_ROW, LATENT_ROW, finished_cells, format_ci, rename_rows

_SAME_EVAL = ("protocol", "rollouts", "seeds", "few_shot", "steps", "batch_size", "lr", "max_steps", "eval_seed", "kind")


def _eval_config(run: Path, protocol: str) -> dict[str, Any] | None:
    """The evaluation config a finished row wrote (``eval/<protocol>/frozen/results.json``), if present."""
    f = run / "eval" / protocol / "frozen" / "results.json"
    if not f.is_file():
        return None
    cfg = json.loads(f.read_text(encoding="utf-8")).get("config")
    if isinstance(cfg, dict) and "policy" in cfg and "kind" not in cfg:  # written before `kind` was the name
        cfg = {**cfg, "kind": cfg.pop("policy")}
    return cfg


def _cells(run: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Task sets and per-seed table of a run: its final ``results.json`` if it finished (a snapshot may keep
    only that), else every cell finished so far."""
    final = run / "results.json"
    if final.is_file():
        res = json.loads(final.read_text(encoding="utf-8"))
        if isinstance(res, dict) and "table" in res and "tasks" in res:
            return res["tasks"], rename_rows(res["table"])
    tasks, table, _ = finished_cells(run)
    return tasks, table


def _check_same_setting(a: Path, b: Path, tasks_a: dict[str, Any], tasks_b: dict[str, Any], protocols: list[str]) -> None:
    diff = changes(tasks_a, tasks_b)
    if diff:
        raise HRAlignError(f"--compare {b}: the task sets differ from {a} ({'; '.join(diff)}); "
                           "expected two draws of the same configuration")
    for p in protocols:
        ca, cb = _eval_config(a, p), _eval_config(b, p)
        if ca is None or cb is None:
            continue  # a snapshot without the rows' results.json: the goal count is still checked below
        moved = [f"{k} {ca.get(k)!r} vs {cb.get(k)!r}" for k in _SAME_EVAL if ca.get(k) != cb.get(k)]
        if moved:
            raise HRAlignError(f"--compare {b}: the {p} evaluation differs from {a} ({'; '.join(moved)}); "
                               "expected the same goals, seeds and limits in both draws")


def compare_draws(first: str | Path, second: str | Path, samples: int = 2000) -> dict[str, Any]:
    """Per protocol and row finished in both runs: each draw, pooled, and the gap between them.

    A finished run is read from its ``results.json``, a running one from its finished cells (as
    :func:`finished_cells` decides); rows missing from one run are listed under ``only_in``.
    """
    a, b = Path(first), Path(second)
    tasks_a, table_a = _cells(a)
    tasks_b, table_b = _cells(b)
    protocols = [p for p in table_a if p in table_b]
    _check_same_setting(a, b, tasks_a, tasks_b, protocols)
    if not protocols:
        raise HRAlignError(f"--compare {b}: no protocol has frozen finished in both {a} and {b}; nothing to compare")
    eval_tasks = tuple(tasks_a["eval"])
    out: dict[str, Any] = {"runs": [str(a), str(b)], "tasks": tasks_a, "protocols": {}, "only_in": {}}
    for p in protocols:
        mats_a = {v: outcome_matrix(r, eval_tasks) for v, r in table_a[p].items()}
        mats_b = {v: outcome_matrix(r, eval_tasks) for v, r in table_b[p].items()}
        rows = [v for v in mats_a if v in mats_b]
        out["only_in"][p] = sorted(set(mats_a) ^ set(mats_b))
        goals_a, goals_b = mats_a["frozen"].shape[1], mats_b["frozen"].shape[1]
        if goals_a != goals_b:
            raise HRAlignError(f"--compare {b}: {p} has {goals_b} goals per row there and {goals_a} in {a}; "
                               "expected the same goals in both draws")
        per_draw = [paired_bootstrap({v: m[v] for v in rows}, reference="frozen", samples=samples)
                    for m in (mats_a, mats_b)]
        pooled_mats = {v: np.vstack([mats_a[v], mats_b[v]]) for v in rows}
        pooled = paired_bootstrap(pooled_mats, reference="frozen", samples=samples)
        gap = draw_gap({v: mats_a[v] for v in rows}, {v: mats_b[v] for v in rows}, reference="frozen", samples=samples)
        entry: dict[str, Any] = {"rows": rows, "seeds": [mats_a["frozen"].shape[0], mats_b["frozen"].shape[0]],
                                 "goals": goals_a, "draws": per_draw, "pooled": pooled, "gap": gap}
        if LATENT_ROW in rows and LATENT_CONTROL_ROW in rows:  # the chain against its own control, per draw and pooled
            pair = (LATENT_ROW, LATENT_CONTROL_ROW)
            entry["latent_chain"] = {
                "draws": [paired_bootstrap({v: m[v] for v in pair}, reference=LATENT_CONTROL_ROW,
                                           samples=samples)[LATENT_ROW] for m in (mats_a, mats_b)],
                "pooled": paired_bootstrap({v: pooled_mats[v] for v in pair}, reference=LATENT_CONTROL_ROW,
                                           samples=samples)[LATENT_ROW],
                "gap": draw_gap({v: mats_a[v] for v in pair}, {v: mats_b[v] for v in pair},
                                reference=LATENT_CONTROL_ROW, samples=samples)[LATENT_ROW]}
        out["protocols"][p] = entry
    return out


def _gap(g: dict[str, float], diff: bool = False) -> str:
    """A :func:`draw_gap` entry as :func:`hralign_bench.v2.format_ci` writes a paired difference."""
    k = "diff_gap" if diff else "gap"
    lo, hi = (g[f"{k}_lo"], g[f"{k}_hi"]) if diff else (g["lo"], g["hi"])
    return f"{g[k]:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def format_draws(res: dict[str, Any]) -> str:
    """Markdown: per protocol, success per draw / pooled / gap, then the differences to frozen the same way."""
    a, b = res["runs"]
    lines = ["# MetaWorld v2: two draws of the same configuration", "",
             f"draw 1: `{a}`; draw 2: `{b}`. Success [95% CI, paired bootstrap over goals and seeds]; pooled = "
             "both draws' seeds on the same goals; gap = draw 2 - draw 1 [95% CI, goals paired, seeds resampled "
             "per draw]: an interval that includes 0 means the draws agree within their own noise."]
    for p, e in res["protocols"].items():
        d1, d2, pooled, gap = e["draws"][0], e["draws"][1], e["pooled"], e["gap"]
        lines += ["", f"## {p} ({e['goals']} goals x {e['seeds'][0]} / {e['seeds'][1]} BC seeds)", "",
                  "| row | draw 1 | draw 2 | pooled | gap |", "|---|---|---|---|---|"]
        for v in e["rows"]:
            lines.append(f"| {v} | {format_ci(d1[v])} | {format_ci(d2[v])} | {format_ci(pooled[v])} | {_gap(gap[v])} |")
        lines += ["", "| row - frozen | draw 1 | draw 2 | pooled | moved between draws |", "|---|---|---|---|---|"]
        for v in e["rows"]:
            if v == "frozen":
                continue
            lines.append(f"| {v} | {format_ci(d1[v], True)} | {format_ci(d2[v], True)} | {format_ci(pooled[v], True)} | "
                         f"{_gap(gap[v], True)} |")
        if "latent_chain" in e:
            c = e["latent_chain"]
            lines += ["", f"{LATENT_ROW} - {LATENT_CONTROL_ROW}: draw 1 {format_ci(c['draws'][0], True)}; draw 2 "
                      f"{format_ci(c['draws'][1], True)}; pooled {format_ci(c['pooled'], True)}; moved {_gap(c['gap'], True)}"]
        if e["rows"] and res["only_in"].get(p):
            lines.append(f"finished in one draw only (not compared): {', '.join(res['only_in'][p])}")
    return "\n".join(lines) + "\n"


def write_draws(out: str | Path, res: dict[str, Any]) -> None:
    """``OUT/results_draws.{md,json}`` beside the run's own results (atomic writes; the other run is only read)."""
    out = Path(out)
    write_text_atomic(out / "results_draws.json", json.dumps(res, indent=2))
    write_text_atomic(out / "results_draws.md", format_draws(res))


__all__ = ["compare_draws", "format_draws", "write_draws"]
