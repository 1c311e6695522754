"""k-means over latent actions with FAISS, in scikit-learn's estimator shape.

LAPA / IGOR / UniVLA inspect latent-action semantics by clustering latents and looking at the
members; we do the same with ``faiss.Kmeans`` (GPU when faiss sees one) so 100k+ latents cluster
in seconds, and expose ``fit`` / ``predict`` / ``fit_predict`` / ``transform`` with learned
state in ``*_`` attributes like ``sklearn.cluster.KMeans``.
"""

from __future__ import annotations

import math
import warnings

import faiss
import numpy as np

from hralign.errors import HRAlignError


def _as_points(x: np.ndarray, name: str = "X") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise HRAlignError(f"`{name}` should be a non-empty 2-D array of shape (n_samples, n_features) but got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise HRAlignError(f"`{name}` contains NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


_INIT = ("k-means++", "random")


def _init_kwargs(init: str) -> dict:
    if init == "random":
        return {}
    method = getattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS", None)
    if method is None:
        warnings.warn("this faiss has no k-means++ init (needs faiss >= 1.12); using random init", stacklevel=3)
        return {}
    return {"init_method": method}


def _gpu_count(use_gpu: bool | str) -> int:
    if use_gpu is False:
        return 0
    n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is True and n == 0:
        raise HRAlignError("`use_gpu` is True but faiss sees no GPU (faiss-cpu installed?); use 'auto' or False")
    return n


class FaissKMeans:
    """k-means clustering with ``faiss.Kmeans`` on all points.

    Parameters
    ----------
    k : int
        Number of clusters.
    spherical : bool
        Cosine k-means: points and centroids are L2-normalised and assignment is by inner product.
    nredo : int
        Number of restarts; the run with the best objective is kept (faiss ``nredo``).
    niter : int
        Lloyd iterations per run.
    seed : int
        Seed of faiss' centroid initialisation; same data + seed give the same clusters on CPU.
    use_gpu : bool or "auto"
        "auto" uses every GPU faiss sees (none with faiss-cpu).
    init : {"k-means++", "random"}
        Centroid initialisation. "k-means++" (scikit-learn's default, D^2 sampling) avoids the
        merged-blob local optima of faiss' default uniform "random" init; it needs faiss >= 1.12
        (older versions fall back to "random" with a warning).
    max_points : int or None
        Cap on the points used to train the centroids. ``None`` (default) trains on all points;
        faiss by default silently subsamples to ``max_points_per_centroid * k`` (256 * k) points.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (k, n_features)
    labels_ : ndarray of shape (n_samples,)  cluster of each training point
    inertia_ : float  sum of squared distances of the points to their centroid
    n_train_points_ : int  how many points trained the centroids
    """

    def __init__(self, k: int = 16, spherical: bool = False, nredo: int = 1, niter: int = 25, seed: int = 0,
                 use_gpu: bool | str = "auto", init: str = "k-means++", max_points: int | None = None) -> None:
        self.k = k
        self.spherical = spherical
        self.nredo = nredo
        self.niter = niter
        self.seed = seed
        self.use_gpu = use_gpu
        self.init = init
        self.max_points = max_points

    def _check_params(self, n: int) -> None:
        for name in ("k", "nredo", "niter"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise HRAlignError(f"`{name}` should be a positive integer but the value passed is {v!r}")
        if self.k > n:
            raise HRAlignError(f"`k` ({self.k}) is larger than the number of points ({n}); use k <= {n}")
        if self.use_gpu not in ("auto", True, False):
            raise HRAlignError(f"`use_gpu` should be 'auto', True or False but the value passed is {self.use_gpu!r}")
        if self.init not in _INIT:
            raise HRAlignError(f"`init` should be one of {', '.join(_INIT)} but the value passed is {self.init!r}")
        if self.max_points is not None and self.max_points < self.k:
            raise HRAlignError(f"`max_points` ({self.max_points}) should be None or at least k ({self.k})")

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_normalize(x), dtype=np.float32) if self.spherical else x

    def fit(self, X: np.ndarray, y=None) -> "FaissKMeans":
        """Learn ``k`` centroids from X of shape (n_samples, n_features)."""
        x = self._prepare(_as_points(X))
        n, d = x.shape
        self._check_params(n)
        cap = n if self.max_points is None else min(n, int(self.max_points))
        ngpu = _gpu_count(self.use_gpu)
        km = faiss.Kmeans(
            d, int(self.k), niter=int(self.niter), nredo=int(self.nredo), spherical=bool(self.spherical),
            seed=int(self.seed), verbose=False, gpu=ngpu if ngpu else False,
            # faiss samples max_points_per_centroid * k training points and drops the rest without
            # a word (only a stderr warning); set it so the sample is everything (or our explicit cap).
            max_points_per_centroid=max(1, math.ceil(cap / self.k)),
            # faiss warns below 39 points per centroid; small analyses are legitimate, so allow 1.
            min_points_per_centroid=1,
            **_init_kwargs(self.init),
        )
        km.train(x)
        self.cluster_centers_ = np.asarray(km.centroids, dtype=np.float32).reshape(self.k, d)
        self.n_train_points_ = min(n, max(1, math.ceil(cap / self.k)) * int(self.k))
        self.n_features_in_ = d
        self.labels_, dist = self._assign(x)
        self.inertia_ = float(dist.sum())
        self.gpu_ = bool(ngpu)
        return self

    def _assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid (L2; on normalised data the same as max cosine) and its squared distance."""
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(self.cluster_centers_)
        dist, ids = index.search(x, 1)
        return ids[:, 0].astype(np.int64), np.maximum(dist[:, 0], 0.0).astype(np.float64)

    def _check_fitted(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "cluster_centers_"):
            raise HRAlignError("this FaissKMeans is not fitted yet; call fit(X) first")
        x = self._prepare(_as_points(X))
        if x.shape[1] != self.n_features_in_:
            raise HRAlignError(f"`X` has {x.shape[1]} features but the clusters were fitted on {self.n_features_in_}")
        return x

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Cluster index of each row of X, shape (n_samples,)."""
        return self._assign(self._check_fitted(X))[0]

    def fit_predict(self, X: np.ndarray, y=None) -> np.ndarray:
        return self.fit(X).labels_

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row to every centroid, shape (n_samples, k) (as sklearn)."""
        x = self._check_fitted(X)
        d2 = (x ** 2).sum(1, keepdims=True) - 2 * x @ self.cluster_centers_.T + (self.cluster_centers_ ** 2).sum(1)
        return np.sqrt(np.maximum(d2, 0.0))

    def __repr__(self) -> str:
        return (f"FaissKMeans(k={self.k}, spherical={self.spherical}, nredo={self.nredo}, niter={self.niter}, "
                f"seed={self.seed}, use_gpu={self.use_gpu!r}, init={self.init!r}, max_points={self.max_points})")


def knn_search(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of every row of ``x`` among ``x`` (self included first).

    Returns (indices int64 (n, k), distances float32 (n, k)) -- the layout umap-learn's
    ``precomputed_knn`` expects (distances are Euclidean, not squared). GPU when faiss has one.
    """
    x = _as_points(x)
    n = x.shape[0]
    k = min(int(n_neighbors), n)
    index = faiss.IndexFlatL2(x.shape[1])
    if _gpu_count("auto"):
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(x)
    d2, ids = index.search(x, k)
    # Duplicates can put another point before self; make self the first neighbour as UMAP expects.
    own = np.arange(n)
    not_first = ids[:, 0] != own
    if not_first.any():
        rows = np.where(not_first)[0]
        for r in rows:
            row = [own[r]] + [j for j in ids[r] if j != own[r]][: k - 1]
            ids[r] = row
            d2[r] = ((x[ids[r]] - x[r]) ** 2).sum(1)
    return ids.astype(np.int64), np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)
