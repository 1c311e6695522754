"""What a source file imports, read from its syntax tree (the layer and benchmark-package tests)."""

from __future__ import annotations

import ast


def imported_packages(tree: ast.Module, module_level_only: bool = False) -> set[str]:
    """Top-level package names a module imports: everywhere (inside functions too) or, with
    ``module_level_only``, only at module level. Relative imports stay inside the package: not counted."""
    nodes = tree.body if module_level_only else ast.walk(tree)
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out
