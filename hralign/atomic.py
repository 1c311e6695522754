"""Atomic outputs: write to a temporary name beside the target, then rename.

A crash, a full disk or a kill never leaves a half-written checkpoint, adapter or pairs file
under the final name; ``os.replace`` is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give the output the mode a plain open() would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; on success rename it to ``path``.

    The caller writes the file itself (h5py, torch.save, safetensors ...). On any exception the
    temporary file is removed and ``path`` keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _public_mode(tmp_path, tmp_path.is_dir())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` as a whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _public_mode(tmp, is_dir=True)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stale_temporaries(path: str | os.PathLike, suffix: str = "") -> list[Path]:
    """Temporary files that a killed writer of ``path`` (``atomic_path``, ``PairsWriter``) left beside it.

    Only names of the exact form ``.NAME.XXXXXXXX<suffix>.tmp`` (``tempfile.mkstemp``'s 8 random
    characters) and plain files match, so another output's temporaries are never among them.
    """
    target = Path(path)
    name = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}\.tmp")
    found = target.parent.glob(f".{glob.escape(target.name)}.*{glob.escape(suffix)}.tmp")
    return sorted(p for p in found if name.fullmatch(p.name) and p.is_file() and not p.is_symlink())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file (JSON, HTML) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
