"""Do latent actions mean the same thing for a human and a robot? Numbers instead of pictures.

LAPA (Ye et al., 2024), IGOR (Chen et al., 2024) and UniVLA (Bu et al., 2025) judge latent-action
semantics by eye from a few clusters; LAOM (Nikulin et al., 2025) uses linear probes to actions.
Here each judgement is a metric on (latents, clusters, metadata):

- NMI / ARI of clusters vs tasks, per embodiment and pooled;
- embodiment mixing: per cluster the normalised binary entropy of its human/robot share,
  averaged over non-empty clusters (1 = every cluster equally human and robot, 0 = split);
- paired agreement: for frame-aligned pairs, the share of (human t, robot t) latents in the same cluster;
- cross-embodiment kNN task accuracy (robot queries vs human references and back; weighted, k=20),
  with :func:`hralign.metrics.knn_accuracy`;
- the action probe R^2 from robot latents to robot actions (:func:`hralign.metrics.action_probe_r2`:
  ridge, grouped 5-fold by clip; the number `hralign lam eval` reports for the same latents);
- silhouette on a sample.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2, knn_accuracy

HUMAN, ROBOT = 0, 1  # domain codes in latent metadata
DOMAIN_NAMES = ("human", "robot")


def embodiment_mixing(labels: np.ndarray, domain: np.ndarray, balance: bool = True) -> float | None:
    """Mean over non-empty clusters of the normalised entropy of the human/robot share.

    With ``balance`` the shares are computed on counts divided by each embodiment's total, so a
    dataset with more robot than human latents still scores 1 when clusters are proportionally mixed.
    Returns None when only one embodiment is present (mixing is undefined).
    """
    labels, domain = np.asarray(labels), np.asarray(domain)
    if labels.shape != domain.shape:
        raise HRAlignError(f"`labels` {labels.shape} and `domain` {domain.shape} should have the same shape")
    n_h, n_r = int((domain == HUMAN).sum()), int((domain == ROBOT).sum())
    if n_h == 0 or n_r == 0:
        return None
    ents = []
    for c in np.unique(labels):
        m = labels == c
        h, r = float((domain[m] == HUMAN).sum()), float((domain[m] == ROBOT).sum())
        if balance:
            h, r = h / n_h, r / n_r
        p = h / (h + r)
        ents.append(0.0 if p in (0.0, 1.0) else float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
    return float(np.mean(ents))


def paired_agreement(labels: np.ndarray, domain: np.ndarray, pair: np.ndarray, t: np.ndarray) -> float | None:
    """Share of matched (pair, t) human/robot latents that land in the same cluster (None if no match)."""
    labels, domain, pair, t = (np.asarray(a) for a in (labels, domain, pair, t))
    key = pair.astype(np.int64) * (int(t.max()) + 1 if t.size else 1) + t.astype(np.int64)
    hm = (domain == HUMAN) & (pair >= 0)
    rm = (domain == ROBOT) & (pair >= 0)
    h_lab = dict(zip(key[hm].tolist(), labels[hm].tolist()))
    same = [h_lab[k] == lab for k, lab in zip(key[rm].tolist(), labels[rm].tolist()) if k in h_lab]
    return float(np.mean(same)) if same else None


def cross_knn(latents: np.ndarray, domain: np.ndarray, task: np.ndarray, k: int = 20) -> dict[str, float | None]:
    """Weighted kNN task accuracy across embodiments: robot->human, human->robot and their mean."""
    h, r = domain == HUMAN, domain == ROBOT
    if not h.any() or not r.any():
        return {"knn_robot_to_human": None, "knn_human_to_robot": None, "knn_cross": None}
    r2h = knn_accuracy(latents[r], task[r], latents[h], task[h], k=k, weighted=True)
    h2r = knn_accuracy(latents[h], task[h], latents[r], task[r], k=k, weighted=True)
    return {"knn_robot_to_human": r2h, "knn_human_to_robot": h2r, "knn_cross": (r2h + h2r) / 2}


def silhouette(latents: np.ndarray, labels: np.ndarray, sample_size: int = 2000, seed: int = 0) -> float | None:
    """Silhouette of the clustering on a random sample (None with fewer than 2 clusters)."""
    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels >= latents.shape[0]:
        return None
    return float(silhouette_score(latents, labels, sample_size=min(sample_size, latents.shape[0]), random_state=seed))


def consistency_metrics(latents: np.ndarray, labels: np.ndarray, domain: np.ndarray, task: np.ndarray,
                        pair: np.ndarray, t: np.ndarray, actions: np.ndarray | None = None,
                        clip: np.ndarray | None = None, knn_k: int = 20, seed: int = 0,
                        silhouette_sample: int = 2000) -> dict[str, float | None]:
    """All metrics of one view (frozen or adapted) as a flat JSON-able dict.

    Parameters
    ----------
    latents : (n, d) latent actions; labels : (n,) cluster ids; domain : (n,) 0 human / 1 robot;
    task : (n,) task ids; pair, t : (n,) pair index (-1 = unpaired) and time within the clip;
    actions : (n, A) robot action targets (rows of human latents ignored) or None;
    clip : (n,) clip ids used to hold out whole clips in the probe.
    """
    latents = np.asarray(latents, np.float32)
    n = latents.shape[0]
    for name, a in (("labels", labels), ("domain", domain), ("task", task), ("pair", pair), ("t", t)):
        if np.asarray(a).shape != (n,):
            raise HRAlignError(f"`{name}` should have shape ({n},) like the latents but has {np.asarray(a).shape}")
    out: dict[str, float | None] = {"num_latents": float(n), "num_clusters_used": float(np.unique(labels).size)}
    for d, dname in enumerate(DOMAIN_NAMES):
        m = domain == d
        out[f"num_{dname}"] = float(m.sum())
        out[f"nmi_{dname}"] = float(normalized_mutual_info_score(task[m], labels[m])) if m.any() else None
        out[f"ari_{dname}"] = float(adjusted_rand_score(task[m], labels[m])) if m.any() else None
    out["nmi_pooled"] = float(normalized_mutual_info_score(task, labels))
    out["ari_pooled"] = float(adjusted_rand_score(task, labels))
    out["embodiment_mixing"] = embodiment_mixing(labels, domain)
    out["paired_agreement"] = paired_agreement(labels, domain, pair, t)
    out.update(cross_knn(latents, domain, task, k=knn_k))
    out["action_probe_r2"] = None  # hralign.metrics.action_probe_r2: the same number `hralign lam eval` prints
    if actions is not None:
        r = (domain == ROBOT) & np.isfinite(np.asarray(actions, np.float64)).all(1)
        y = np.asarray(actions, np.float64)[r]
        groups = clip[r] if clip is not None else np.arange(int(r.sum()))
        if r.sum() >= 4 and np.unique(groups).size >= 2 and (y.std(0) > 1e-9).any():
            out["action_probe_r2"] = action_probe_r2(latents[r], y, groups, seed=seed)["action_probe_r2"]
    out["silhouette"] = silhouette(latents, labels, sample_size=silhouette_sample, seed=seed)
    return out
