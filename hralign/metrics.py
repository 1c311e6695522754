"""Cross-embodiment retrieval, kNN and per-frame metrics shared by pretrain, adapt, sim and analysis.

Plain numpy + FAISS (exact inner-product indexes on L2-normalised features = cosine), with no
hralign imports, so every room can use the same definitions.
"""

from __future__ import annotations

import faiss
import numpy as np

from hralign.errors import HRAlignError


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, contiguous, as FAISS wants)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check_2d(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise HRAlignError(f"`{name}` should be a non-empty 2-D array of shape (n_samples, n_features) but got {list(x.shape)}")
    return x


def knn_accuracy(query: np.ndarray, query_labels: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray,
                 k: int = 20, weighted: bool = True, exclude_self: bool = False) -> float:
    """Accuracy of a (cosine-similarity weighted) k-nearest-neighbour vote of ``reference`` labels.

    With ``exclude_self`` the query set is the reference set and each point's own match is dropped
    (leave-one-out). Weights are exp(cos / 0.07) as in the usual weighted kNN monitor (InstDisc).
    """
    query, reference = _check_2d("query", query), _check_2d("reference", reference)
    q, r = l2_normalize(query), l2_normalize(reference)
    k_eff = min(k + int(exclude_self), r.shape[0])
    index = faiss.IndexFlatIP(r.shape[1])
    index.add(r)
    sims, ids = index.search(q, k_eff)
    if exclude_self:
        keep = ids != np.arange(q.shape[0])[:, None]
        # drop exactly one column per row: the self match when found, else the last neighbour
        order = np.argsort(~keep, axis=1, kind="stable")[:, : k_eff - 1]
        sims, ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
    ref_labels = np.asarray(reference_labels)
    labels = ref_labels[ids]  # (n_query, k)
    classes = np.unique(ref_labels)
    w = np.exp(sims / 0.07) if weighted else np.ones_like(sims)
    votes = np.stack([(w * (labels == c)).sum(1) for c in classes], axis=1)
    pred = classes[votes.argmax(1)]
    return float((pred == np.asarray(query_labels)).mean())


def retrieval_topk(queries: np.ndarray, references: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k retrieval accuracy where the correct match of query i is reference i (cosine)."""
    queries, references = _check_2d("queries", queries), _check_2d("references", references)
    if queries.shape[0] != references.shape[0]:
        raise HRAlignError(f"retrieval needs as many queries as references; got {queries.shape[0]} and {references.shape[0]}")
    sims = l2_normalize(queries) @ l2_normalize(references).T  # (n, n)
    rank = (sims > np.diag(sims)[:, None]).sum(1)  # how many references beat the true one
    return {f"top{k}": float((rank < k).mean()) for k in ks}


def alignment_margin(human: np.ndarray, adapted: np.ndarray, frozen: np.ndarray) -> float:
    """mean(cos(h, a) - cos(h, r)): how much closer the adapted robot feature sits to its human partner."""
    h, a, r = (l2_normalize(_check_2d(n, x)) for n, x in (("human", human), ("adapted", adapted), ("frozen", frozen)))
    return float(((h * a).sum(1) - (h * r).sum(1)).mean())


def frame_error(human, robot) -> float:
    """sum ||r_t - h_t||^2 / sum ||h_t - mean(h)||^2 over the frames of frame-aligned pairs (NaN if none are).

    ``human`` and ``robot`` are sequences of per-clip frame features (T_i, D), pair by pair; pairs
    whose clips differ in length are not frame-aligned and are skipped. What a policy trained on
    human-view features meets when run on robot-view features: the error is measured against the
    spread of the human features (a BC head standardises its inputs), so 0 means the robot frames
    look exactly like their human partners and 1 means the error is as large as the variation the
    policy learned to read.
    """
    pairs = [(np.asarray(h, np.float64), np.asarray(r, np.float64)) for h, r in zip(human, robot)]
    pairs = [(h, r) for h, r in pairs if h.shape == r.shape]
    if not pairs:
        return float("nan")
    hs = np.concatenate([h for h, _ in pairs])
    num = sum(float(((r - h) ** 2).sum()) for h, r in pairs)
    den = float(((hs - hs.mean(0)) ** 2).sum())
    return num / den if den > 0 else float("nan")
