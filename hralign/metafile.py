"""The JSON metadata file of a saved hralign directory (encoder, adapter, LAM, policy).

Each saved directory carries a JSON object with ``hralign_format`` and ``hralign_version``; one
reader checks them so every kind of directory fails the same clear way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hralign.errors import HRAlignError


def read_json(path: Path, missing: str) -> Any:
    """The parsed JSON of ``path``; one line naming the file when it is absent (``missing`` says what
    was expected) or not valid JSON."""
    if not path.is_file():
        raise HRAlignError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HRAlignError(f"{path}: not valid JSON ({e})") from e


def read_meta_json(path: Path, formats: tuple[str, ...] | None, version: int, written_by: str) -> dict[str, Any]:
    """Read ``path``; it must be a JSON object whose format is one of ``formats`` (any when None) at ``version``.

    ``written_by`` names what writes such directories, for the error message (e.g. "`hralign lam train`").
    """
    meta = read_json(path, f"missing; expected a directory written by {written_by}")
    found = meta.get("hralign_format") if isinstance(meta, dict) else None
    if found is None or (formats is not None and found not in formats):
        expected = " or ".join(repr(f) for f in formats) if formats else "a format name"
        raise HRAlignError(f"{path}: `hralign_format` is {found!r}, expected {expected} (written by {written_by})")
    if meta.get("hralign_version") != version:
        raise HRAlignError(f"{path}: `hralign_version` is {meta.get('hralign_version')!r}, expected {version} "
                           "(written by another hralign version; re-create it or convert it)")
    return meta
