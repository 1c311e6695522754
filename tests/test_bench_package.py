"""The benchmark package: the import rule (hralign never imports hralign_bench) and the v2 figure."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _imports import imported_packages
from conftest import run_cli

from hralign.errors import HRAlignError

ROOT = Path(__file__).resolve().parents[1]
CLI_FRONT = ROOT / "hralign" / "cli" / "bench.py"  # the one module of hralign allowed to import it


def _imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports (module level or inside functions)."""
    return imported_packages(ast.parse(path.read_text(encoding="utf-8")))


def test_hralign_never_imports_the_benchmark_package():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "hralign").rglob("*.py"))
                 if p != CLI_FRONT and "hralign_bench" in _imports(p)]
    assert offenders == []
    assert "hralign_bench" in _imports(CLI_FRONT)  # the rule is checked against a real import
    # and at run time: the library and its CLI entry point load without it
    code = ("import sys, hralign, hralign.sim, hralign.metrics, hralign.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith('hralign_bench')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_wheel_ships_the_benchmark_package():
    """setup.cfg's package list names it, so `hralign bench` works from an installed wheel."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = [s.strip() for s in cfg["options.packages.find"]["include"].split(",")]
    assert "hralign_bench" in include and "hralign_bench.*" in include


def _results(rows: dict[str, dict[str, list[float]]]) -> dict:
    """A v2 results dict: protocol -> row -> [mean, lo, hi]."""
    return {"protocols": list(rows),
            "stats": {p: {"bootstrap": {r: dict(zip(("mean", "lo", "hi"), v)) for r, v in cells.items()}}
                      for p, cells in rows.items()}}


def test_figure_has_one_interval_per_row_and_protocol(tmp_path):
    from hralign_bench.figure import plot_success

    rows = {"robot": {"frozen": [0.2, 0.1, 0.3], "random-init": [0.35, 0.28, 0.42], "full fine-tune": [0.5, 0.4, 0.6]},
            "transfer": {"frozen": [0.0, 0.0, 0.05], "random-init": [0.02, 0.0, 0.06], "full fine-tune": [0.1, 0.0, 0.2],
                         "human-view oracle": [0.46, 0.34, 0.59]}}
    fig = plot_success(_results(rows), tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["robot", "transfer"]
    for ax, p in zip(axes, rows):
        drawn = {c.get_label(): c for c in ax.containers}  # one errorbar container per (row, protocol)
        assert len(ax.containers) == len(rows[p]) and set(drawn) == set(rows[p])
        for r, (mean, lo, hi) in rows[p].items():
            line, _caps, (bars,) = drawn[r].lines
            assert line.get_xdata()[0] == pytest.approx(mean)
            (seg,) = bars.get_segments()  # the horizontal interval [lo, hi]
            assert sorted(seg[:, 0]) == pytest.approx([lo, hi])
    # every row on one axis in table order: the oracle (transfer only) is the last tick
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["frozen", "random-init", "full fine-tune",
                                                                  "human-view oracle"]


def test_figure_command_reads_committed_results_and_refuses_bad_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results({"robot": {"frozen": [0.2, 0.1, 0.3]}})))
    code, stdout, stderr = run_cli("bench", "metaworld-v2", "--out", str(run), "--figure")
    assert code == 0, stderr
    assert (run / "results.png").stat().st_size > 1000 and "results.png" in stdout
    (run / "results.json").write_text("{not json")
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(run), "--figure")
    assert code == 2 and "results.json: not JSON" in stderr and len(stderr.strip().splitlines()) == 1
    (run / "results.json").write_text(json.dumps({"protocols": ["robot"], "stats": {"robot": {"bootstrap": {
        "frozen": {"mean": 0.2}}}}}))
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(run), "--figure")
    assert code == 2 and "frozen" in stderr and "expected numbers mean, lo, hi" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "empty"), "--figure")
    assert code == 2 and "no results.json or results_partial.json" in stderr
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(run), "--figure", "--sequential")
    assert code == 2 and "--figure" in stderr


def test_success_intervals_name_the_file_and_field():
    from hralign_bench.figure import success_intervals

    with pytest.raises(HRAlignError, match="r.json: no `protocols` list"):
        success_intervals({"table": {}}, source="r.json")
    with pytest.raises(HRAlignError, match="protocol 'robot' has no"):
        success_intervals({"protocols": ["robot"], "stats": {}}, source="r.json")
