"""Row access in chunks: the same code path for an in-memory array and an on-disk HDF5 dataset.

A million 512-d latents are 2 GB; ``Rows`` lets every analysis step read them ``chunk`` rows at
a time (optionally through a transform such as PCA whitening), so memory holds one chunk plus
what the step itself keeps (labels, a sample, an index).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

CHUNK_ROWS = 65536  # rows per read: 128 MB of 512-d float32


class Rows:
    """(n, d) float32 rows of ``data`` (ndarray or h5py.Dataset), read ``chunk`` rows at a time.

    ``transform`` maps a float32 chunk (m, d) to (m, d'); it is applied on every read.
    """

    def __init__(self, data, transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 chunk: int = CHUNK_ROWS) -> None:
        self.data = data
        self.transform = transform
        self.chunk = int(chunk)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def in_memory(self) -> bool:
        return isinstance(self.data, np.ndarray) and self.transform is None

    def _read(self, a: int, b: int) -> np.ndarray:
        x = np.ascontiguousarray(self.data[a:b], dtype=np.float32)
        return np.ascontiguousarray(self.transform(x), dtype=np.float32) if self.transform is not None else x

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, float32 chunk) in order."""
        for a in range(0, len(self), self.chunk):
            yield a, self._read(a, min(a + self.chunk, len(self)))

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (sorted, unique) as one float32 array; reads only the chunks that hold them."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.in_memory:
            return np.ascontiguousarray(self.data[idx], dtype=np.float32)
        parts = []
        for a in range(0, len(self), self.chunk):
            lo, hi = np.searchsorted(idx, [a, a + self.chunk])
            if hi > lo:
                parts.append(self._read(a, min(a + self.chunk, len(self)))[idx[lo:hi] - a])
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def all(self) -> np.ndarray:
        """Every row in memory (only for small data and tests)."""
        if self.in_memory:
            return np.ascontiguousarray(self.data, dtype=np.float32)
        return np.concatenate([c for _, c in self.chunks()]) if len(self) else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self._read(0, 1).shape[1]) if len(self) else int(self.data.shape[1])
