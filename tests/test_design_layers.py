"""docs/design.md's picture of the layers is true: the import graph of hralign, read from the source,
only points down it; optional heavy packages and device's torch are imported inside functions."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from _imports import imported_packages

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^│\s*(\d+)\s{2}(.+?)\s{2,}")  # "│  7  pretrain · align · lam      the trainers │"
LAZY_ONLY = ("umap", "metaworld", "mujoco")  # optional extras: imported inside the functions that need them


def documented_layers(design: Path = ROOT / "docs" / "design.md") -> dict[str, int]:
    """room -> layer number, parsed from the box picture under "### The layers"."""
    text = design.read_text(encoding="utf-8")
    section = text[text.index("### The layers"):text.index("## Contracts")]
    layers: dict[str, int] = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            for name in m.group(2).split(" · "):
                layers[name.strip()] = int(m.group(1))
    return layers


def room_of(path: Path, package: Path) -> str | None:
    """The room of a module: its folder under hralign/, or the helper module's name (None: the facade)."""
    parts = path.relative_to(package).parts
    if parts == ("__init__.py",):
        return None
    return parts[0] if len(parts) > 1 else parts[0][:-3]


def imported_rooms(tree: ast.AST, rooms: set[str]) -> dict[str, int]:
    """hralign room -> line of the first import of it, at any depth of the module (functions too)."""
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ([f"hralign.{a.name}" for a in node.names] if node.module == "hralign" else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "hralign" and len(parts) > 1 and parts[1] in rooms:
                out.setdefault(parts[1], node.lineno)
    return out


def import_graph(package: Path = ROOT / "hralign") -> dict[str, dict[str, str]]:
    """room -> {imported room: "file:line"} of the whole package (imports of the room itself left out)."""
    files = sorted(package.rglob("*.py"))
    rooms = {r for f in files if (r := room_of(f, package)) is not None}
    graph: dict[str, dict[str, str]] = {r: {} for r in rooms}
    for f in files:
        src = room_of(f, package)
        if src is None:
            continue
        for dst, line in imported_rooms(ast.parse(f.read_text(encoding="utf-8")), rooms).items():
            if dst != src:
                graph[src].setdefault(dst, f"{f.relative_to(package.parent)}:{line}")
    return graph


def layer_violations(graph: dict[str, dict[str, str]], layers: dict[str, int]) -> list[str]:
    """Every room missing from the picture and every import that does not point to a lower layer."""
    out = [f"{r}: not in the picture of docs/design.md" for r in sorted(graph) if r not in layers]
    for src in sorted(graph):
        for dst, where in sorted(graph[src].items()):
            if src in layers and dst in layers and layers[dst] >= layers[src]:
                out.append(f"{where}: {src} (layer {layers[src]}) imports {dst} (layer {layers[dst]})")
    return out


def test_picture_has_every_room_once_in_order():
    layers = documented_layers()
    assert layers["errors"] == 0 and layers["cli"] == max(layers.values())
    assert layers["pairs"] < layers["encoders"] < layers["adapters"] < layers["train"] < layers["lam"] \
        < layers["policy"] < layers["sim"] < layers["cli"]
    assert set(import_graph()) == set(layers)


def test_imports_only_point_down_the_layers():
    assert layer_violations(import_graph(), documented_layers()) == []


def test_a_wrong_import_is_found(tmp_path):
    pkg = tmp_path / "hralign"
    for rel, text in {"__init__.py": "from hralign.errors import HRAlignError\n", "errors.py": "",
                      "pairs/__init__.py": "", "pairs/io.py": "import hralign.errors\n",
                      "encoders/__init__.py": "from hralign.pairs import io\n",
                      "extra.py": "def f():\n    from hralign.encoders import x\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert graph == {"errors": {}, "pairs": {"errors": "hralign/pairs/io.py:1"},
                     "encoders": {"pairs": "hralign/encoders/__init__.py:1"}, "extra": {"encoders": "hralign/extra.py:2"}}
    layers = {"errors": 0, "pairs": 1, "encoders": 2}
    assert layer_violations(graph, layers) == ["extra: not in the picture of docs/design.md"]
    assert layer_violations(graph, {**layers, "extra": 3}) == []
    # a function-level import upwards, and one beside, are found
    assert layer_violations(graph, {**layers, "extra": 0}) == [
        "hralign/extra.py:2: extra (layer 0) imports encoders (layer 2)"]
    assert layer_violations(graph, {**layers, "encoders": 1, "extra": 3}) == [
        "hralign/encoders/__init__.py:1: encoders (layer 1) imports pairs (layer 1)"]


def test_heavy_optional_packages_and_devices_torch_are_imported_lazily():
    for f in sorted((ROOT / "hralign").rglob("*.py")):
        eager = imported_packages(ast.parse(f.read_text(encoding="utf-8")), module_level_only=True)
        assert not eager & set(LAZY_ONLY), (f, eager & set(LAZY_ONLY))
    assert "torch" not in imported_packages(ast.parse((ROOT / "hralign" / "device.py").read_text(encoding="utf-8")),
                                         module_level_only=True)
