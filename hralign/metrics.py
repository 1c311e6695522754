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
    pred = knn_vote(sims, labels, np.unique(ref_labels), weighted=weighted)
    return float((pred == np.asarray(query_labels)).mean())


def knn_vote(sims: np.ndarray, labels: np.ndarray, classes: np.ndarray, weighted: bool = True,
             valid: np.ndarray | None = None) -> np.ndarray:
    """Predicted class per query from its neighbours' cosine ``sims`` and ``labels`` (both (n, k)).

    The vote of :func:`knn_accuracy`, also used by analysis' own neighbour indexes: weights
    exp(cos / 0.07) (or 1), neighbours where ``valid`` is False (FAISS' -1 padding) count 0.
    """
    w = np.exp(sims / 0.07) if weighted else np.ones_like(sims)
    if valid is not None:
        w = np.where(valid, w, 0.0)
    votes = np.stack([(w * (labels == c)).sum(1) for c in classes], axis=1)
    return classes[votes.argmax(1)]


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


def action_probe_r2(latents: np.ndarray, targets: np.ndarray, groups: np.ndarray, folds: int = 5,
                    seed: int = 0, proprio: np.ndarray | None = None) -> dict:
    """The action probe R² every report uses: how linearly latents carry the actions they stand for.

    The linear probe from latent to true action of LAPA (Ye et al., 2024) and LAOM (Nikulin et al.,
    2025), scored on held-out groups (episodes/clips), never on rows of a clip it was fitted on.

    A ridge probe (``StandardScaler`` + ``RidgeCV``) from latents (n, d) to action targets (n, A)
    is fitted under grouped K-fold cross-validation (``groups``: the clip of each row, so no clip
    is both fitted and scored; ``min(folds, n_groups)`` folds), and every row is predicted once
    out of fold. ``action_probe_r2`` is the plain mean of the per-column R² over the target
    columns with non-zero variance (a constant column carries no signal; a plain mean so a
    high-variance column cannot hide the others). ``action_probe_r2_shuffled`` is the same probe
    on row-shuffled targets (a control that should sit near or below 0). LAPA/IGOR use such a
    probe to check that latent actions carry the control signal. R² does not change when the
    targets are scaled, so summed and mean actions over a gap give the same number.

    ``proprio`` (n, S), optional: the robot state of each row. With it the result also holds
    ``action_probe_r2_proprio``, the same probe from proprio alone (the floor images must beat: a
    policy sees proprio too), and ``action_probe_r2_with_proprio``, from [latents, proprio]; both on
    the same folds. ``action_probe_r2`` itself always reads the latents only.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(latents, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise HRAlignError(f"probe: latents {list(x.shape)} and targets {list(y.shape)} should be 2-D with equal rows")
    groups = np.asarray(groups)
    if groups.shape != (x.shape[0],):
        raise HRAlignError(f"probe: `groups` should have shape ({x.shape[0]},) but has {list(groups.shape)}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise HRAlignError(f"probe: `folds` should be an integer >= 2 but the value passed is {folds!r}")
    s = None
    if proprio is not None:
        s = np.asarray(proprio, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] != x.shape[0]:
            raise HRAlignError(f"probe: `proprio` should have shape ({x.shape[0]}, n_state) but has {list(s.shape)}")
    keep = y.std(0) > 1e-9
    if not keep.any():
        raise HRAlignError("probe: every target column is constant; nothing to predict")
    y = y[:, keep]
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise HRAlignError(f"probe: needs rows from at least 2 clips, got {n_groups}")
    cv = GroupKFold(n_splits=min(folds, n_groups))

    def cv_r2(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        pred = np.zeros_like(yy)
        for tr, te in cv.split(xx, yy, groups):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
            model.fit(xx[tr], yy[tr])
            pred[te] = model.predict(xx[te]).reshape(len(te), -1)
        return np.asarray(r2_score(yy, pred, multioutput="raw_values"), dtype=np.float64)

    rng = np.random.default_rng(seed)
    real, shuffled = cv_r2(x, y), cv_r2(x, y[rng.permutation(len(y))])
    floor = {}
    if s is not None:
        floor = {"action_probe_r2_proprio": float(cv_r2(s, y).mean()),
                 "action_probe_r2_with_proprio": float(cv_r2(np.hstack([x, s]), y).mean())}
    return {**floor, "action_probe_r2": float(real.mean()), "action_probe_r2_shuffled": float(shuffled.mean()),
            "action_probe_r2_per_column": [float(v) for v in real],
            "action_probe_r2_shuffled_per_column": [float(v) for v in shuffled],
            "rows": int(len(y)), "clips": int(n_groups), "folds": int(cv.get_n_splits()),
            "target_columns": [int(i) for i in np.flatnonzero(keep)]}


def participation_ratio(x: np.ndarray) -> float:
    """Effective number of directions of features [N, D] once each dimension is standardised:
    (sum of covariance eigenvalues)^2 / sum of their squares (D for isotropic features, 1 for one line).

    Why: R3M's BC head standardises its inputs (BatchNorm), so this is the geometry it trains on; a
    base whose frame features concentrate in a few directions trains it slowly even when a linear
    read-out of them (the action probe, solved in closed form) is good. Constant dimensions count
    as zero variance. Fewer than 2 rows: NaN.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise HRAlignError(f"participation ratio: expected features of shape (N, D), got {list(x.shape)}")
    if len(x) < 2:
        return float("nan")
    z = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    ev = np.clip(np.linalg.eigvalsh(np.atleast_2d(np.cov(z, rowvar=False))), 0.0, None)
    return float(ev.sum() ** 2 / max((ev ** 2).sum(), 1e-300))


FEW_BASES = 10  # below this many items a rank correlation's bootstrap interval is wide and coarse


def rank_correlation(x, y, samples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Spearman's rho between ``x`` and ``y`` (one value per item, e.g. a diagnostic and closed-loop
    success per base) with a percentile bootstrap interval that resamples the items.

    Why: whether a cheap diagnostic ranks encoders as closed loop does is a statement about few
    items, so the interval matters more than rho. Resamples in which ``x`` or ``y`` is constant
    have no rho and are left out (``valid_samples`` says how many counted). With 2 items rho is
    +-1 by construction and no interval is given; under :data:`FEW_BASES` items the ``note`` warns that
    the bootstrap has few distinct resamples (the interval is wide unless the ranks agree exactly).
    """
    from scipy.stats import spearmanr

    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise HRAlignError(f"rank correlation: expected two 1-D arrays of equal length >= 2 but got shapes "
                           f"{list(a.shape)} and {list(b.shape)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise HRAlignError("rank correlation: every value should be finite (a NaN or inf was passed)")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise HRAlignError(f"rank correlation: `samples` should be an integer >= 1 but the value passed is {samples!r}")
    if not 0 < confidence < 1:
        raise HRAlignError(f"rank correlation: `confidence` should be in (0, 1) but the value passed is {confidence!r}")
    n = len(a)
    base = {"n": int(n), "samples": int(samples), "confidence": float(confidence)}
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {**base, "rho": None, "lo": None, "hi": None, "valid_samples": 0,
                "note": "one of the two is constant across the items: no rank correlation"}
    rho = float(spearmanr(a, b).statistic)
    if n == 2:
        return {**base, "rho": rho, "lo": None, "hi": None, "valid_samples": 0,
                "note": "2 items: rho is +-1 by construction, no interval"}
    rng = np.random.default_rng(seed)
    reps = []
    for idx in rng.integers(0, n, size=(samples, n)):
        if np.ptp(a[idx]) > 0 and np.ptp(b[idx]) > 0:
            reps.append(spearmanr(a[idx], b[idx]).statistic)
    lo, hi = (np.percentile(reps, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]) if reps
              else (np.nan, np.nan))
    note = f"{n} items: few distinct resamples, read the interval with care" if n < FEW_BASES else ""
    return {**base, "rho": rho, "lo": float(lo) if reps else None, "hi": float(hi) if reps else None,
            "valid_samples": len(reps), "note": note}
