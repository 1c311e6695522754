"""The benchmark scripts are run by hand, not imported by the package: compile each under this interpreter.

``benchmarks/gr1_metaworld.py`` once used an f-string with nested double quotes, valid only from Python 3.12;
on the project's 3.11 it failed before doing anything, and no test imported it.
"""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts() -> None:
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(script: Path, tmp_path: Path) -> None:
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed_file(path: Path, seed: int, push: list[int], sweep: list[int]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    goals = push + sweep
    path.write_text(json.dumps({"seed": seed, "success": sum(goals) / len(goals), "demo_mse": 0.001,
                                "early_stop": {"best_step": 300, "best_heldout_mse": 0.05},
                                "per_goal": {"push": push, "sweep-into": sweep}}))


def test_gr1_metaworld_report_reads_finished_rows_and_pools_draws(tmp_path: Path) -> None:
    """--report: rows with every seed written are compared (bootstrap and random-effects t), a row still
    running is named, not compared; two draws pool their seeds on the same goals."""
    gm = _load("gr1_metaworld")
    for draw, shift in (("a", 0), ("b", 1)):
        for s in range(2):
            _seed_file(tmp_path / draw / "robot" / "bc" / "bc" / f"seed{s}.json", s, [1, 1, 0, 1], [0, 1, 0, 0])
            _seed_file(tmp_path / draw / "robot" / "gr1" / "gr1" / f"seed{s}.json", s, [0, 0, 0, shift], [0, 0, 0, 0])
        _seed_file(tmp_path / draw / "robot" / "gr1_stage1" / "gr1+stage1" / "seed0.json", 0, [1] * 4, [1] * 4)
    text = gm.report([tmp_path / "a", tmp_path / "b"], samples=200)
    rows = [line for line in text.splitlines() if line.startswith("| gr1 - bc")]
    assert len(rows) == 3  # draw a, draw b, pooled
    assert rows[0].split("|")[2].strip() == "-0.50" and rows[1].split("|")[2].strip() == "-0.38"
    assert rows[2].split("|")[2].strip() == "-0.44"
    assert "gr1+stage1: 1 seed(s) finished so far" in text and "| gr1+stage1 - gr1 " not in text
    lo, hi = (float(x) for x in rows[0].split("|")[4].split("(")[0].strip(" []").split(","))
    assert lo < -0.5 < hi
