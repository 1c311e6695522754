"""2-D maps of latent actions: UMAP (McInnes et al., 2018) on FAISS neighbours, or PCA.

umap-learn is imported inside :meth:`UMAPEmbedding.fit_transform` only: importing it costs 5-25 s
(numba) and its first fit another 60-90 s of JIT compile, which commands and tests that do not
draw a UMAP must not pay. The kNN graph comes from FAISS (exact, GPU when present) and is handed
to umap through its documented ``precomputed_knn`` argument, so umap skips its own NN-descent.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA

from hralign.analysis.cluster import _as_points, knn_search
from hralign.errors import HRAlignError


class UMAPEmbedding:
    """Seeded 2-D UMAP with a FAISS-precomputed kNN graph.

    Parameters
    ----------
    n_neighbors : int
        Size of the local neighbourhood (umap's ``n_neighbors``).
    min_dist : float
        umap's ``min_dist``.
    seed : int
        ``random_state``; umap then runs single-threaded and is repeatable.
    pca_dim : int or None
        Inputs wider than this are first reduced to their top ``pca_dim`` principal components
        (the usual UMAP/scanpy practice): the exact FAISS kNN then costs n^2 * pca_dim instead of
        n^2 * d, and the map hardly changes. None keeps all dimensions.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, 2)
    """

    method = "umap"

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0, pca_dim: int | None = 50) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed
        self.pca_dim = pca_dim

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        x = _as_points(X)
        n = x.shape[0]
        if n < 4:
            raise HRAlignError(f"UMAP needs at least 4 points, got {n}; use --no-umap")
        k = int(min(self.n_neighbors, n - 1))
        if k < 2:
            raise HRAlignError(f"`n_neighbors` should be at least 2 but the value passed is {self.n_neighbors}")
        if self.pca_dim is not None and x.shape[1] > self.pca_dim and n > self.pca_dim:
            x = PCA(n_components=int(self.pca_dim), random_state=self.seed).fit_transform(x).astype(np.float32)
        ids, dists = knn_search(x, k)
        import umap  # lazy: see module docstring (5-25 s import, numba JIT)

        with warnings.catch_warnings():
            # we pass no NNDescent search index (we never call umap.transform), and random_state
            # forcing n_jobs=1 is what we want for repeatability: both warnings are expected.
            warnings.simplefilter("ignore")
            reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=float(self.min_dist),
                                random_state=int(self.seed), precomputed_knn=(ids, dists, None),
                                transform_mode="embedding")
            self.embedding_ = np.asarray(reducer.fit_transform(x), dtype=np.float32)
        return self.embedding_

    def fit(self, X: np.ndarray, y=None) -> "UMAPEmbedding":
        self.fit_transform(X)
        return self


class PCAEmbedding:
    """First two principal components (the fallback map when UMAP is off)."""

    method = "pca"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit_transform(self, X: np.ndarray, y=None) -> np.ndarray:
        x = _as_points(X)
        if x.shape[0] < 2:
            self.embedding_ = np.zeros((x.shape[0], 2), np.float32)
            return self.embedding_
        n_comp = min(2, x.shape[1], x.shape[0])
        z = PCA(n_components=n_comp, random_state=self.seed).fit_transform(x)
        if n_comp < 2:
            z = np.concatenate([z, np.zeros((z.shape[0], 2 - n_comp))], axis=1)
        self.embedding_ = z.astype(np.float32)
        return self.embedding_

    def fit(self, X: np.ndarray, y=None) -> "PCAEmbedding":
        self.fit_transform(X)
        return self
