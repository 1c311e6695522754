"""k-means over latent actions with FAISS, in scikit-learn's estimator shape.

LAPA / IGOR / UniVLA inspect latent-action semantics by clustering latents and looking at the
members; we do the same with ``faiss.Kmeans`` and expose ``fit`` / ``predict`` / ``fit_predict`` /
``transform`` with learned state in ``*_`` attributes like ``sklearn.cluster.KMeans``.

What makes it faster than scikit-learn at the same inertia (measured in ``benchmarks/cluster.py``):

- **init**: scikit-learn's *greedy* k-means++ (``sklearn.cluster.kmeans_plusplus``, 2 + log k
  candidates per step) on ``init_size`` points. faiss' own k-means++ is the plain D^2 draw and
  lands in merged-blob optima (+50% inertia on the benchmark mixture); the greedy draw is what
  gives scikit-learn its quality, and on a 100*k subsample it costs well under a second.
- **restarts**: ``nredo`` greedy inits + Lloyd runs, the lowest training objective kept.
- **sample then assign**: Lloyd iterations run on ``max_points`` training points (a seeded
  sample, or the stratified sample the pipeline passes), then every point is assigned to its
  nearest centroid chunk by chunk (:meth:`assign`), so 1M x 512 never needs a full-data Lloyd.
- **method by measurement**: where ``benchmarks/cluster.py`` measured scikit-learn's
  ``MiniBatchKMeans`` faster at an inertia within 1% of KMeans (:data:`MINIBATCH_FROM`, figures in
  its comment and docs/analysis.md) it trains the centroids; faiss Lloyd elsewhere. Assignment of
  every point is faiss either way.
- **threads**: on a machine where other jobs use every core, OpenMP/BLAS spin-waiting makes 2
  threads 3-5x slower than 1 (measured); ``threads=None`` picks the idle core count
  (:func:`auto_threads`). Results do not depend on the thread count (faiss sums each centroid
  over points in order; the test checks 1 vs 2 threads).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator

import faiss
import numpy as np
from sklearn.cluster import kmeans_plusplus
from threadpoolctl import threadpool_limits

from hralign.analysis.rows import Rows
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
METHODS = ("auto", "faiss", "minibatch")
MINIBATCH_BATCH = 4096  # MiniBatchKMeans batch size (the one measured)
# Training method (``method="auto"``, :func:`choose_method`): MiniBatchKMeans from these training-set
# sizes and k on, faiss Lloyd below. Measured with benchmarks/cluster.py kmeans (N x 512 mixtures of
# k true clusters, 1 thread, both trained on the same 50k-point sample, every point assigned;
# benchmarks/results/cluster/kmeans.json, docs/analysis.md): inertia vs scikit-learn KMeans (25 Lloyd
# iterations on all points), mean of the runs (100k: seeds 0-2; 300k, 1M: seed 0), and CPU s:
#   k=64  MiniBatch -0.8% (runs -5.4%..+5.8%), faiss -1.7% (-10.4%..+6.6%); 6.4-8.6 s vs 8.5-9.2 s
#   k=256 MiniBatch -1.8% (runs -4.3%..+1.1%), faiss -1.9% (-3.6%..-0.6%); 14-19 s vs 24-30 s
# Single runs spread by +-5% at k=64 for every method (scikit-learn's own seeds too: local optima of
# the mixture), so the means decide: MiniBatch is within 1% of KMeans and faster (1.05-1.3x at
# k=64, 1.5-1.9x at k=256). Below 50k training points or k=64 it was not measured: faiss there.
MINIBATCH_FROM: dict[str, int] = {"n_train": 50_000, "k": 64}


def auto_threads() -> int:
    """Cores not busy with other jobs (1-minute load average), at least 1.

    Why: with every core taken, OpenMP threads spin-wait for each other; we measured faiss
    k-means 3-5x slower with 2 threads than with 1 on 2 loaded cores.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # platforms without a load average
        return cores
    return int(max(1, min(cores, cores - round(load) + 1)))


@contextlib.contextmanager
def compute_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` faiss (OpenMP) and BLAS threads (None: :func:`auto_threads`), then restore."""
    n = auto_threads() if n is None else int(n)
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        faiss.omp_set_num_threads(old)


def _gpu_count(use_gpu: bool | str) -> int:
    if use_gpu is False:
        return 0
    n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is True and n == 0:
        raise HRAlignError("`use_gpu` is True but faiss sees no GPU (faiss-cpu installed?); use 'auto' or False")
    return n


class FaissKMeans:
    """k-means clustering with ``faiss.Kmeans``, greedy k-means++ init, restarts, sample-then-assign.

    Parameters
    ----------
    k : int
        Number of clusters.
    spherical : bool
        Cosine k-means: points and centroids are L2-normalised and assignment is by inner product.
    nredo : int
        Number of restarts (each its own init); the run with the lowest training objective is kept.
    niter : int
        Lloyd iterations per run.
    seed : int
        Seed of the training sample, the inits and faiss; same data + seed give the same clusters
        (on CPU, whatever the thread count).
    use_gpu : bool or "auto"
        "auto" uses every GPU faiss sees (none with faiss-cpu).
    init : {"k-means++", "random"}
        "k-means++": scikit-learn's greedy k-means++ on ``init_size`` training points (module
        docstring); "random": faiss' uniform draw of k training points.
    max_points : int or None
        Points that train the centroids: None trains on all of X; an int trains on a seeded
        uniform sample of that many (every point is still assigned). faiss' own silent
        subsampling (``max_points_per_centroid``) is switched off either way.
    init_size : int or None
        Points the greedy k-means++ draws from (default ``100 * k``).
    method : {"auto", "faiss", "minibatch"}
        How the centroids are trained: "faiss" (Lloyd, the options above), "minibatch"
        (scikit-learn ``MiniBatchKMeans``, batch 4096, ``nredo`` inits, its own k-means++ and
        convergence; ``niter``/``init``/``init_size`` unused), "auto": :func:`choose_method`.
    threads : int or None
        faiss / BLAS threads (None: :func:`auto_threads`).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (k, n_features)
    labels_ : ndarray of shape (n_samples,)  cluster of each point of X
    inertia_ : float  sum of squared distances of the points of X to their centroid
    n_train_points_ : int  how many points trained the centroids
    method_ : str  "faiss" or "minibatch", the method that trained them
    """

    def __init__(self, k: int = 16, spherical: bool = False, nredo: int = 3, niter: int = 20, seed: int = 0,
                 use_gpu: bool | str = "auto", init: str = "k-means++", max_points: int | None = None,
                 init_size: int | None = None, threads: int | None = None, method: str = "auto") -> None:
        self.k = k
        self.spherical = spherical
        self.nredo = nredo
        self.niter = niter
        self.seed = seed
        self.use_gpu = use_gpu
        self.init = init
        self.max_points = max_points
        self.init_size = init_size
        self.threads = threads
        self.method = method

    def _check_params(self, n: int) -> None:
        for name in ("k", "nredo", "niter"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise HRAlignError(f"`{name}` should be a positive integer but the value passed is {v!r}")
        if self.k > n:
            raise HRAlignError(f"`k` ({self.k}) is larger than the number of points ({n}); use k <= {n}")
        if self.use_gpu not in ("auto", True, False):
            raise HRAlignError(f"`use_gpu` should be 'auto', True or False but the value passed is {self.use_gpu!r}")
        if self.method not in METHODS:
            raise HRAlignError(f"`method` should be one of {', '.join(METHODS)} but the value passed is {self.method!r}")
        if self.init not in _INIT:
            raise HRAlignError(f"`init` should be one of {', '.join(_INIT)} but the value passed is {self.init!r}")
        if self.max_points is not None and self.max_points < self.k:
            raise HRAlignError(f"`max_points` ({self.max_points}) should be None or at least k ({self.k})")
        if self.init_size is not None and self.init_size < self.k:
            raise HRAlignError(f"`init_size` ({self.init_size}) should be None or at least k ({self.k})")

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_normalize(x), dtype=np.float32) if self.spherical else x

    def fit(self, X: np.ndarray, y=None) -> "FaissKMeans":
        """Learn ``k`` centroids from X of shape (n_samples, n_features), then label every row of X."""
        x = self._prepare(_as_points(X))
        n, d = x.shape
        self._check_params(n)
        rng = np.random.default_rng(self.seed)
        train = x
        if self.max_points is not None and self.max_points < n:
            train = x[np.sort(rng.choice(n, size=int(self.max_points), replace=False))]
        ngpu = _gpu_count(self.use_gpu)
        method = choose_method(len(train), int(self.k), gpu=bool(ngpu)) if self.method == "auto" else self.method
        best = None
        with compute_threads(self.threads):
            for r in range(int(self.nredo) if method == "faiss" else 0):
                km = faiss.Kmeans(
                    d, int(self.k), niter=int(self.niter), nredo=1, spherical=bool(self.spherical),
                    seed=int(self.seed) + r, verbose=False, gpu=ngpu if ngpu else False,
                    # faiss samples max_points_per_centroid * k training points and drops the rest
                    # without a word; set it so the training set is what we chose.
                    max_points_per_centroid=max(1, math.ceil(len(train) / self.k)),
                    # faiss warns below 39 points per centroid; small analyses are legitimate.
                    min_points_per_centroid=1,
                )
                init = None
                if self.init == "k-means++":
                    m = min(len(train), int(self.init_size or 100 * self.k))
                    pool = train if m == len(train) else train[np.sort(rng.choice(len(train), m, replace=False))]
                    init, _ = kmeans_plusplus(pool, int(self.k), random_state=int(rng.integers(2**31 - 1)))
                    init = np.ascontiguousarray(init, dtype=np.float32)
                    if self.spherical:
                        init = np.ascontiguousarray(_normalize(init), dtype=np.float32)
                km.train(train, init_centroids=init)
                obj = float(km.obj[-1]) if len(km.obj) else math.inf
                if best is None or obj < best[0]:
                    best = (obj, np.asarray(km.centroids, dtype=np.float32).reshape(self.k, d).copy())
            if method == "minibatch":
                best = (None, self._minibatch(train))
            self.cluster_centers_ = best[1]
            self.method_ = method
            self.n_train_points_ = len(train)
            self.n_features_in_ = d
            self.labels_, dist = self._assign(x)
        self.inertia_ = float(dist.sum())
        self.gpu_ = bool(ngpu)
        return self

    def _minibatch(self, train: np.ndarray) -> np.ndarray:
        """Centroids from scikit-learn's MiniBatchKMeans (seeded; ``nredo`` k-means++ inits)."""
        from sklearn.cluster import MiniBatchKMeans

        mb = MiniBatchKMeans(n_clusters=int(self.k), batch_size=MINIBATCH_BATCH, n_init=int(self.nredo),
                             random_state=int(self.seed)).fit(train)
        c = np.asarray(mb.cluster_centers_, dtype=np.float32)
        return np.ascontiguousarray(_normalize(c) if self.spherical else c, dtype=np.float32)

    def _assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid (L2; on normalised data the same as max cosine) and its squared distance.

        Private: ``x`` is checked and prepared float32 (n, d).
        """
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(self.cluster_centers_)
        dist, ids = index.search(x, 1)
        return ids[:, 0].astype(np.int64), np.maximum(dist[:, 0], 0.0).astype(np.float64)

    def assign(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """Cluster and squared distance to its centroid of every row of ``rows``, read chunk by chunk.

        Returns (labels int64 (n,), squared distances float64 (n,)); memory: one chunk.
        """
        if not hasattr(self, "cluster_centers_"):
            raise HRAlignError("this FaissKMeans is not fitted yet; call fit(X) first")
        labels = np.empty(len(rows), np.int64)
        dist = np.empty(len(rows), np.float64)
        with compute_threads(self.threads):
            for a, chunk in rows.chunks():
                lab, d2 = self._assign(self._check_fitted(chunk))
                labels[a:a + len(chunk)], dist[a:a + len(chunk)] = lab, d2
        return labels, dist

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
                f"seed={self.seed}, use_gpu={self.use_gpu!r}, init={self.init!r}, max_points={self.max_points}, "
                f"init_size={self.init_size}, threads={self.threads}, method={self.method!r})")


def choose_method(n_train: int, k: int, gpu: bool | None = None) -> str:
    """Training method for ``n_train`` points and ``k`` clusters by the measured rule
    (:data:`MINIBATCH_FROM`); faiss on a GPU (``gpu`` None: whether faiss sees one), where faiss'
    Lloyd is the fast path and MiniBatchKMeans was not measured against it."""
    if gpu is None:
        gpu = _gpu_count("auto") > 0
    if gpu:
        return "faiss"
    return "minibatch" if n_train >= MINIBATCH_FROM["n_train"] and k >= MINIBATCH_FROM["k"] else "faiss"


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
