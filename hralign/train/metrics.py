"""The one ``metrics.jsonl`` writer: one JSON object per line, main process only.

A checkpoint records how many lines the log had when it was written; ``--resume`` cuts the log
back to that many lines, so the lines an interrupted run wrote after its last checkpoint are
written once, by the resumed run (a line count, not a step filter: the policy's stages each
count steps from 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hralign.atomic import write_text_atomic


class MetricsLog:
    """Append-only JSON lines at ``path``; ``enabled=False`` (other processes) writes nothing."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled
        self.lines = 0

    def start(self) -> None:
        """A fresh run: an empty log."""
        self.lines = 0
        if self.enabled:
            write_text_atomic(self.path, "")

    def trim(self, lines: int) -> None:
        """Resume: keep the first ``lines`` lines (those written before the checkpoint)."""
        kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines] if self.path.exists() else []
        self.lines = len(kept)
        if self.enabled:
            write_text_atomic(self.path, "".join(kept))

    def write(self, record: dict[str, Any]) -> None:
        self.lines += 1
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
