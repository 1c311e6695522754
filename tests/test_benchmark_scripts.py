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
