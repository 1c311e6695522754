"""2-D maps of latent actions: UMAP (McInnes et al., 2018) on FAISS neighbours, or PCA.

At scale the map is fitted on a sample and every other point is placed with the fitted model's
``transform`` (umap-learn's documented out-of-sample embedding: the new point's fuzzy
neighbourhood among the fitted points, then a few optimisation epochs with the fitted points
fixed), chunk by chunk. The kNN graphs come from FAISS: the fit's exact graph is handed to umap
as ``precomputed_knn``; for ``transform`` umap asks its search index for the neighbours of new
points, and we hand it a FAISS exact index over the (PCA-reduced) fitted points with the one
method umap calls (``query``), instead of building pynndescent's NN-descent forest.

umap-learn is imported inside :meth:`UMAPEmbedding.fit` only: importing it costs 5-45 s (numba)
and its first fit more JIT compile, which commands and tests that do not draw a UMAP must not
pay. numba's on-disk cache goes to ``$NUMBA_CACHE_DIR`` (default ``~/.cache/hralign/numba``) so
that later processes load compiled code even when site-packages is read-only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import faiss
import numpy as np
from sklearn.decomposition import PCA

from hralign.analysis.cluster import _as_points, compute_threads, knn_search
from hralign.analysis.rows import Rows
from hralign.errors import HRAlignError


class _FaissQueryIndex:
    """The part of pynndescent's ``NNDescent`` that ``umap.UMAP.transform`` uses: ``query`` (and the
    ``_angular_trees`` flag), answered by an exact FAISS L2 index over the fitted points."""

    _angular_trees = False

    def __init__(self, x: np.ndarray) -> None:
        self.index = faiss.IndexFlatL2(x.shape[1])
        self.index.add(np.ascontiguousarray(x, dtype=np.float32))

    def query(self, X: np.ndarray, k: int = 10, epsilon: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        d2, ids = self.index.search(np.ascontiguousarray(X, dtype=np.float32), int(k))
        return ids.astype(np.int32), np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)


def _numba_cache_dir() -> None:
    # numba reads NUMBA_CACHE_DIR when it is first imported (by umap): set a writable default
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "hralign" / "numba"))


class UMAPEmbedding:
    """Seeded 2-D UMAP fitted on at most ``fit_size`` points, FAISS kNN, ``transform`` for the rest.

    Parameters
    ----------
    n_neighbors : int
        Size of the local neighbourhood (umap's ``n_neighbors``).
    min_dist : float
        umap's ``min_dist``.
    seed : int
        ``random_state`` (umap then runs single-threaded and is repeatable) and the fit sample.
    pca_dim : int or None
        Inputs wider than this are first reduced to their top ``pca_dim`` principal components
        (fitted on the fit points; the usual UMAP/scanpy practice): kNN then costs pca_dim
        instead of d per distance, and the map hardly changes. None keeps all dimensions.
    fit_size : int
        Points the UMAP is fitted on (a seeded uniform subset of what :meth:`fit` gets; the
        pipeline passes a stratified sample). 15000 keeps a fresh-process first call on 50k
        points near 30 s on 2 cores (benchmarks/cluster.py).
    n_epochs : int
        Optimisation epochs of the fit (umap's default is 200 above 10k points, 500 below).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_fit, 2)  the fitted points' map
    """

    method = "umap"

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0, pca_dim: int | None = 50,
                 fit_size: int = 15_000, n_epochs: int = 200, threads: int | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed
        self.pca_dim = pca_dim
        self.fit_size = fit_size
        self.n_epochs = n_epochs
        self.threads = threads

    def _reduce(self, x: np.ndarray) -> np.ndarray:
        return self.pca_.transform(x).astype(np.float32) if self.pca_ is not None else x

    def fit(self, X: np.ndarray, y=None) -> "UMAPEmbedding":
        """Fit on X (n, d), or on a seeded subset of ``fit_size`` rows of it."""
        x = _as_points(X)
        n = x.shape[0]
        if n < 4:
            raise HRAlignError(f"UMAP needs at least 4 points, got {n}; use --no-umap")
        if n > self.fit_size:
            x = x[np.sort(np.random.default_rng(self.seed).choice(n, size=int(self.fit_size), replace=False))]
            n = x.shape[0]
        k = int(min(self.n_neighbors, n - 1))
        if k < 2:
            raise HRAlignError(f"`n_neighbors` should be at least 2 but the value passed is {self.n_neighbors}")
        self.pca_ = None
        if self.pca_dim is not None and x.shape[1] > self.pca_dim and n > self.pca_dim:
            self.pca_ = PCA(n_components=int(self.pca_dim), random_state=self.seed).fit(x)
        xr = self._reduce(x)
        with compute_threads(self.threads):
            ids, dists = knn_search(xr, k)
        _numba_cache_dir()
        import umap  # lazy: see module docstring (5-45 s import, numba JIT)

        with warnings.catch_warnings():
            # our search index is not an NNDescent (umap warns transform may be unavailable: it is
            # available through _FaissQueryIndex.query), and random_state forcing n_jobs=1 is what
            # we want for repeatability: both warnings are expected.
            warnings.simplefilter("ignore")
            self.umap_ = umap.UMAP(n_components=2, n_neighbors=k, min_dist=float(self.min_dist),
                                   random_state=int(self.seed), n_epochs=int(self.n_epochs),
                                   precomputed_knn=(ids, dists, _FaissQueryIndex(xr)))
            self.embedding_ = np.asarray(self.umap_.fit_transform(xr), dtype=np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Place new points (m, d) on the fitted map (umap's ``transform``), shape (m, 2)."""
        if not hasattr(self, "umap_"):
            raise HRAlignError("this UMAPEmbedding is not fitted yet; call fit(X) first")
        x = self._reduce(_as_points(X))
        with warnings.catch_warnings(), compute_threads(self.threads):
            warnings.simplefilter("ignore")
            return np.asarray(self.umap_.transform(x), dtype=np.float32)

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        """Map of every row of X: fitted rows from the fit, the others through :meth:`transform`."""
        x = _as_points(X)
        return embed_rows(self, Rows(x), np.arange(len(x)))


def embed_rows(embedding, rows: Rows, sample: np.ndarray) -> np.ndarray:
    """Fit ``embedding`` (UMAP or PCA) on ``rows[sample]`` and map every row, chunk by chunk: (n, 2).

    Rows the fit used keep their fitted coordinates; every other row goes through ``transform``.
    """
    sample = np.asarray(sample, np.int64)
    x = rows.take(sample)
    embedding.fit(x)
    out = np.empty((len(rows), 2), np.float32)
    # which rows of `x` the fit used (UMAP fits a seeded subset of at most fit_size)
    used = np.arange(len(x))
    if isinstance(embedding, UMAPEmbedding) and len(x) > embedding.fit_size:
        used = np.sort(np.random.default_rng(embedding.seed).choice(len(x), size=int(embedding.fit_size), replace=False))
    fit_rows = sample[used]
    is_fit = np.zeros(len(rows), bool)
    is_fit[fit_rows] = True
    for a, chunk in rows.chunks():
        m = ~is_fit[a:a + len(chunk)]
        if m.any():
            out[a:a + len(chunk)][m] = embedding.transform(chunk[m])
    out[fit_rows] = embedding.embedding_
    return out


class PCAEmbedding:
    """First two principal components (the fallback map when UMAP is off)."""

    method = "pca"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray, y=None) -> "PCAEmbedding":
        x = _as_points(X)
        self.n_comp_ = min(2, x.shape[1], x.shape[0]) if x.shape[0] >= 2 else 0
        self.pca_ = PCA(n_components=self.n_comp_, random_state=self.seed).fit(x) if self.n_comp_ else None
        self.embedding_ = self.transform(x)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        x = _as_points(X)
        if self.pca_ is None:
            return np.zeros((x.shape[0], 2), np.float32)
        z = self.pca_.transform(x)
        if self.n_comp_ < 2:
            z = np.concatenate([z, np.zeros((z.shape[0], 2 - self.n_comp_))], axis=1)
        return z.astype(np.float32)

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        return self.fit(X).embedding_
