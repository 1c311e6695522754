"""docs/design.md is the repository's own design document: it names files that exist, and nothing in
the repository points to a design document or path outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what an outside reference looks like: the starting design and style pages, or paths of the machine
OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|COMMON\.md|\.\./shared|/work/")


def outside_references(root: Path = ROOT) -> list[str]:
    """``path:line`` of every line in the package, docs, tests, benchmarks, scripts and README that
    points outside the repository."""
    files = [root / "README.md"] + [p for d in ("hralign", "hralign_bench", "docs", "tests", "benchmarks", "scripts")
                                    for p in sorted((root / d).rglob("*")) if p.suffix in (".py", ".md", ".sh")]
    hits = []
    for f in files:
        if not f.is_file() or f == Path(__file__).resolve():
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{f.relative_to(root)}:{i}")
    return hits


def test_nothing_points_outside_the_repository():
    assert outside_references() == []


def test_outside_references_are_found(tmp_path):
    (tmp_path / "hralign").mkdir()
    (tmp_path / "README.md").write_text("see docs/design.md\n")
    (tmp_path / "hralign" / "m.py").write_text('"""As DESIGN.md says."""\n')
    assert outside_references(tmp_path) == ["hralign/m.py:1"]


def test_design_names_files_that_exist():
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`?((?:hralign|tests|docs|benchmarks)/[\w/]+\.(?:py|md))`?", text))
    named |= {f"docs/{m}" for m in re.findall(r"\b([a-z_]+\.md)\b", text) if not m.startswith("design")}
    assert len(named) > 10
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, missing
