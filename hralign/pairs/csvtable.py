"""One reader for the CSV tables users hand to hralign (`pairs build`'s manifest, `pairs import folder`'s table).

Both need the same checks, so both give the same one-line errors: the file exists, is UTF-8 CSV, has the
required columns and at least one row, and every required cell is filled. What a row means stays with
the caller.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from hralign.errors import HRAlignError


def read_csv_records(path: Path, required: Sequence[str], what: str, optional: Sequence[str] = ()) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {column: stripped cell})`` for each data row of ``path``, after the shared checks.

    ``what`` names the table in errors ("manifest", "CSV"); ``optional`` only documents the columns
    a caller also reads, in the error for missing ones.
    """
    path = Path(path)
    expected = ", ".join(required) + "".join(f"[, {c}]" for c in optional)
    if not path.is_file():
        raise HRAlignError(f"{path}: {what} not found (expected a CSV with columns {expected})")
    records: list[tuple[int, dict[str, str]]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise HRAlignError(f"{path}: {what} columns are {header}, missing {missing} (expected {expected})")
            for line, raw in enumerate(reader, start=2):
                rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str) or v is None}
                for c in required:
                    if not rec.get(c):
                        raise HRAlignError(f"{path}: line {line}: column `{c}` is empty, expected a value")
                nul = next((c for c, v in rec.items() if "\0" in v), None)
                if nul is not None:  # HDF5 strings cannot hold one; refused here, before anything is written
                    raise HRAlignError(f"{path}: line {line}: column `{nul}` holds a NUL character, expected text")
                records.append((line, rec))
    except UnicodeDecodeError as e:
        raise HRAlignError(f"{path}: {what} is not UTF-8 text ({e})") from e
    except csv.Error as e:
        raise HRAlignError(f"{path}: {what} is not valid CSV ({e})") from e
    if not records:
        raise HRAlignError(f"{path}: {what} has a header but no rows, expected at least one row")
    return records
