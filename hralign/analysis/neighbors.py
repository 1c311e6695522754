"""Cross-embodiment neighbour metrics on FAISS indexes chosen by size, with their measured recall.

Up to ``exact_max`` reference latents the search is exact: brute force on L2-normalised rows (=
cosine, as :func:`hralign.metrics.knn_accuracy`) streamed over the references chunk by chunk
(``faiss.knn`` + ``faiss.ResultHeap``), so no index is held in memory. Above it an
``IndexIVFFlat`` (inverted lists over a k-means coarse quantiser, Jegou et al. 2011) trained on a
seeded sample of the references and filled chunk by chunk (it holds every reference: 2 KB per
512-d latent, 1 GB for 500k). The queries are a bounded sample (``max_queries`` per direction,
drawn from the stratified sample), so the cost at 1M latents is queries x references, not n^2.
Approximate search changes the metric only through the neighbours it misses, so every metric
carries the recall@k of its search against exact search on a seeded subset of its queries.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from hralign.analysis.cluster import compute_threads
from hralign.analysis.rows import Rows
from hralign.errors import HRAlignError
from hralign.metrics import knn_vote

HUMAN, ROBOT = 0, 1
# References up to this: exact search (streamed, no index), above: IVF. Measured with benchmarks/cluster.py
# knn (512-d, 10k queries per direction, 1 thread; benchmarks/results/cluster/knn.json), both directions:
#   50k refs  exact 11.2 s, IVF (nprobe nlist/8) 13.5 s;   150k refs  exact 35.0 s, IVF 51.5 s;
#   500k refs exact 115 s, IVF 177-185 s (nprobe nlist/8) or 102 s (nlist/16, recall@20 0.9999).
# Up to 500k references exact search is at most 12% slower than the best IVF and holds no index (an
# IVF-Flat holds every reference: 1 GB at 500k), with recall 1; IVF only above, where it was not measured.
EXACT_MAX = 500_000


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class NeighborIndex:
    """Cosine k-nearest-neighbour index over the rows of ``rows`` selected by ``mask``.

    Parameters
    ----------
    exact_max : int
        References up to this count are searched exactly; above, with IVF.
    nlist : int or None
        IVF lists (default ``clip(sqrt(n_ref), 16, 1024)``).
    nprobe : int or None
        Lists visited per query (default ``max(8, nlist // 16)``: recall@20 0.9999 at 500k references in
        the benchmark, 1.8x faster than ``nlist // 8`` at the same recall).
    seed : int
        Seed of the IVF training sample and of faiss' quantiser k-means.

    Attributes
    ----------
    ids_ : ndarray (n_ref,)  row of ``rows`` of each reference;  kind_ : "exact" or "ivf"
    """

    def __init__(self, exact_max: int = EXACT_MAX, nlist: int | None = None, nprobe: int | None = None,
                 seed: int = 0, threads: int | None = None) -> None:
        self.exact_max = exact_max
        self.nlist = nlist
        self.nprobe = nprobe
        self.seed = seed
        self.threads = threads

    def fit(self, rows: Rows, mask: np.ndarray) -> "NeighborIndex":
        self.rows_, self.mask_ = rows, np.asarray(mask, bool)
        self.ids_ = np.flatnonzero(self.mask_)
        n_ref = len(self.ids_)
        if n_ref == 0:
            raise HRAlignError("NeighborIndex: no reference rows (empty mask)")
        d = rows.dim
        if n_ref <= self.exact_max:  # brute force at search time (:meth:`_brute`): nothing to build or hold
            self.kind_, self.desc_ = "exact", "exact (brute force, streamed)"
            return self
        with compute_threads(self.threads):
            self.kind_ = "ivf"
            nlist = int(self.nlist or min(1024, max(16, round(math.sqrt(n_ref)))))
            nprobe = int(self.nprobe or max(8, nlist // 16))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = int(self.seed)
            index.cp.niter = 10
            index.cp.max_points_per_centroid = 10**9  # our sample is the training set
            index.cp.min_points_per_centroid = 1
            rng = np.random.default_rng(self.seed)
            train = np.sort(rng.choice(self.ids_, size=min(n_ref, 30 * nlist), replace=False))
            index.train(_unit(rows.take(train)))
            index.nprobe = nprobe
            self.index_, self._quantizer = index, quantizer  # keep the quantiser alive with the index
            self.desc_ = f"IVF-Flat (nlist={nlist}, nprobe={nprobe})"
            for a, chunk in rows.chunks():
                sel = self.mask_[a:a + len(chunk)]
                if sel.any():
                    self.index_.add(_unit(chunk[sel]))
        return self

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities (m, k), reference rows (m, k), -1 where fewer than k were found)."""
        k = min(int(k), len(self.ids_))
        if self.kind_ == "exact":
            return self._brute(q, k)
        with compute_threads(self.threads):
            sims, pos = self.index_.search(_unit(q), k)
        return sims, np.where(pos >= 0, self.ids_[np.maximum(pos, 0)], -1)

    def exact_search(self, q: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k reference rows of ``q`` by brute force over the references, chunk by chunk."""
        return self._brute(q, min(int(k), len(self.ids_)))[1]

    def _brute(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _unit(q)
        heap = faiss.ResultHeap(len(q), k, keep_max=True)
        with compute_threads(self.threads):
            for a, chunk in self.rows_.chunks():
                sel = np.flatnonzero(self.mask_[a:a + len(chunk)])
                if len(sel):
                    s, i = faiss.knn(q, _unit(chunk[sel]), min(k, len(sel)), metric=faiss.METRIC_INNER_PRODUCT)
                    heap.add_result(s, np.where(i >= 0, sel[np.maximum(i, 0)] + a, -1))
        heap.finalize()
        return heap.D, heap.I

    def recall(self, q: np.ndarray, k: int, found: np.ndarray) -> float:
        """recall@k of ``found`` (rows from :meth:`search`) against exact search; 1.0 for an exact index."""
        if self.kind_ == "exact":
            return 1.0
        exact = self.exact_search(q, k)
        hits = [len(np.intersect1d(f[f >= 0], e[e >= 0])) / max(1, int((e >= 0).sum())) for f, e in zip(found, exact)]
        return float(np.mean(hits))


def cross_knn(latents, domain: np.ndarray, task: np.ndarray, k: int = 20, queries: np.ndarray | None = None,
              pair: np.ndarray | None = None, t: np.ndarray | None = None, max_queries: int = 10_000,
              recall_queries: int = 500, exact_max: int = EXACT_MAX, seed: int = 0,
              threads: int | None = None, nprobe: int | None = None) -> dict[str, float | str | None]:
    """Cross-embodiment neighbour metrics with the recall of their search.

    - ``knn_robot_to_human`` / ``knn_human_to_robot``: weighted kNN (k) task accuracy of one
      embodiment's latents against the other's, and ``knn_cross`` their mean;
    - ``retrieval_robot_to_human`` (with ``pair`` and ``t``): share of paired robot latents whose
      frame-aligned human partner (same pair, same t) is among their k human neighbours;
    - ``*_recall``: recall@k of the search used against exact search (1.0 when exact),
      ``knn_index``: which index, ``knn_queries``: queries per direction.

    ``latents``: (n, d) array or :class:`Rows`; ``queries``: candidate query rows (e.g. the
    stratified sample; default all), at most ``max_queries`` per direction (seeded);
    ``exact_max`` / ``nprobe``: see :class:`NeighborIndex`.
    """
    rows = latents if isinstance(latents, Rows) else Rows(np.asarray(latents, np.float32))
    domain, task = np.asarray(domain), np.asarray(task)
    out: dict[str, float | str | None] = {key: None for key in (
        "knn_robot_to_human", "knn_human_to_robot", "knn_cross", "retrieval_robot_to_human", "knn_robot_to_human_recall",
        "knn_human_to_robot_recall", "knn_index", "knn_queries")}
    h, r = domain == HUMAN, domain == ROBOT
    if not h.any() or not r.any():
        return out
    cand = np.arange(len(rows)) if queries is None else np.asarray(queries, np.int64)
    rng = np.random.default_rng(seed)
    partner = None
    if pair is not None and t is not None:
        pair, t = np.asarray(pair, np.int64), np.asarray(t, np.int64)
        key = pair * (int(t.max()) + 1) + t
        hm = h & (pair >= 0)
        lookup = dict(zip(key[hm].tolist(), np.flatnonzero(hm).tolist()))
    descs, nq = [], []
    for qd, rd, name in ((ROBOT, HUMAN, "knn_robot_to_human"), (HUMAN, ROBOT, "knn_human_to_robot")):
        qi = cand[domain[cand] == qd]
        if len(qi) > max_queries:
            qi = np.sort(rng.choice(qi, size=max_queries, replace=False))
        if len(qi) == 0:
            continue
        index = NeighborIndex(exact_max=exact_max, nprobe=nprobe, seed=seed, threads=threads).fit(rows, domain == rd)
        q = rows.take(qi)
        sims, found = index.search(q, k)
        labels = np.where(found >= 0, task[np.maximum(found, 0)], -1)
        classes = np.unique(task[domain == rd])
        out[name] = float((knn_vote(sims, labels, classes, valid=found >= 0) == task[qi]).mean())
        sub = np.sort(rng.choice(len(qi), size=min(len(qi), recall_queries), replace=False))
        out[f"{name}_recall"] = index.recall(q[sub], k, found[sub])
        descs.append(index.desc_)
        nq.append(len(qi))
        if qd == ROBOT and pair is not None:
            partner = np.array([lookup.get(int(kk), -1) for kk in key[qi]])
            has = partner >= 0
            if has.any():
                out["retrieval_robot_to_human"] = float((found[has] == partner[has, None]).any(1).mean())
        del index, q  # an IVF index holds every reference: free it before the other direction builds its own
    if out["knn_robot_to_human"] is not None and out["knn_human_to_robot"] is not None:
        out["knn_cross"] = (out["knn_robot_to_human"] + out["knn_human_to_robot"]) / 2
    out["knn_index"] = "; ".join(sorted(set(descs)))
    out["knn_queries"] = float(min(nq)) if nq else None
    return out
