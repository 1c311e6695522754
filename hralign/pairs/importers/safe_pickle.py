"""Read pickled ``.npy`` files (RH20T's ``timestamps.npy``, ``tcp.npy``, ``gripper.npy``) without running code.

RH20T stores Python dicts with ``np.save``, so its loaders call ``np.load(path, allow_pickle=True)``,
and a pickle can call any importable function (``os.system`` included). Here the pickle goes through
:class:`RestrictedUnpickler`, whose ``find_class`` (the one hook through which a pickle names a
callable, see the ``pickle`` docs, "Restricting Globals") admits only numpy's array and scalar
reconstructors and dtypes. Dicts, lists, tuples, numbers and strings need no global, so they pass;
anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen`` ...) is refused before it is
called, with one line naming the file and the global.

Both forms are read: a ``.npy`` whose header says ``|O`` (what ``np.save`` writes for a dict: a
0-d object array followed by a pickle) and a raw pickle file.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from hralign.errors import HRAlignError

# (module, name) a pickle may ask for. numpy 1.x writes ``numpy.core.*``, numpy 2.x ``numpy._core.*``;
# ``_frombuffer`` is what protocol-5 pickles of arrays use, ``_codecs.encode`` what protocol-2 (Python 2
# era) pickles use for bytes; both only build data.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((core + ".multiarray", "_reconstruct") for core in ("numpy.core", "numpy._core")),
    *((core + ".multiarray", "scalar") for core in ("numpy.core", "numpy._core")),
    *((core + ".numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")),
    ("_codecs", "encode"),
})


class UnsafePickleError(HRAlignError):
    """A pickle asked for a global outside :data:`ALLOWED_GLOBALS` (it would run code); nothing was called."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global is an error.

    ``source`` names the file in the error message.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{self.source}: refused to unpickle global `{module}.{name}` (only numpy arrays, dicts, "
                               "lists, tuples, numbers and strings are read; this pickle would call other code)")
        with warnings.catch_warnings():  # numpy 2 warns when numpy.core.* is imported; the name is allowed
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused a persistent id in the pickle ({pid!r:.60}); plain data only")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; every failure is one :class:`HRAlignError` line
    (:class:`UnsafePickleError` when the pickle would call a global that is not allowed)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except HRAlignError:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed pickle (EOFError, UnpicklingError, TypeError ...)
        raise HRAlignError(f"{source}: not a readable pickle ({type(e).__name__}: {str(e)[:120]})") from e


def _check_declared_size(p: Path, shape: tuple[int, ...], dtype: np.dtype, header_bytes: int) -> None:
    """Refuse a header whose shape the file cannot hold, before anything is allocated (a forged shape
    would make numpy allocate terabytes). Plain arrays: header + elements x itemsize must be the file's
    size; object arrays: each element takes at least one byte of pickle."""
    size = p.stat().st_size
    n = math.prod(int(d) for d in shape)  # Python ints: no overflow
    if dtype.hasobject:
        if n > size - header_bytes:
            raise HRAlignError(f"{p}: .npy header declares an object array of shape {tuple(shape)} ({n} elements) "
                               f"but only {size - header_bytes} bytes follow the header; expected at least {n}")
        return
    expected = header_bytes + n * dtype.itemsize
    if expected != size:
        raise HRAlignError(f"{p}: .npy header declares {dtype} {tuple(shape)}, {expected} bytes with the header, "
                           f"but the file holds {size} bytes")


def load_pickled_npy(path: str | os.PathLike) -> Any:
    """Load a ``.npy`` file that may hold pickled objects, without ever running code.

    Returns the object ``np.load(path, allow_pickle=True).item()`` would give for a 0-d object array
    (a dict, for RH20T), the object array itself for other shapes, a plain numeric array for
    non-object ``.npy`` files, and the unpickled object for a raw pickle file.
    """
    p = Path(path)
    if not p.is_file():
        raise HRAlignError(f"{p}: file not found")
    with open(p, "rb") as f:
        head = f.read(len(npy_format.MAGIC_PREFIX))
        f.seek(0)
        if head != npy_format.MAGIC_PREFIX:
            return safe_loads(f.read(), str(p))  # a raw pickle
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        except ValueError as e:
            raise HRAlignError(f"{p}: bad .npy header ({e})") from e
        _check_declared_size(p, shape, dtype, f.tell())
        if not dtype.hasobject:
            f.seek(0)
            try:
                return npy_format.read_array(f, allow_pickle=False)
            except ValueError as e:
                raise HRAlignError(f"{p}: unreadable .npy array ({e})") from e
        # np.save writes an object array as pickle.dump(array, protocol=3) after the header
        arr = safe_loads(f.read(), str(p))
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise HRAlignError(f"{p}: .npy header says an object array of shape {tuple(shape)} but the pickle holds "
                           f"{type(arr).__name__}{getattr(arr, 'shape', '')}")
    return arr.item() if arr.shape == () else arr
