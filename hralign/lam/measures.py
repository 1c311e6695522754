"""The one set of measurements of a LAM: `hralign lam eval`, the v2 benchmark's LAM stage and
benchmarks/lam_variants.py all report these, so their numbers compare.

Does the latent say what moved, the way the field asks it (LAPA/LAOM's linear probe, LARYBench's
classification and regression views)?

- **Action probe** (:func:`probe_domain`): :func:`hralign.metrics.action_probe_r2` from the labels'
  latents to the actions over the gap, grouped k-fold by clip, with its shuffled-label control, the
  proprio-only floor and latents + proprio (a policy sees proprio too: a latent is worth something
  where it beats the floor).
- **Reconstruction** (:func:`reconstruction`): the FDM's next-frame error against copying x_t and
  against the FDM fed another sample's latent (shuffled), and codebook perplexity
  (:func:`hralign.lam.train.evaluate_lam`), on the frame pairs of any pairs file.
- **Cross-embodiment consistency without frame-aligned pairs** (:func:`cross_embodiment_knn`):
  kNN accuracy of the task and of the motion phase (time bin of each clip) from one embodiment's
  latents to the other's, query and reference drawn from disjoint episodes so no frame-aligned
  partner can be found, next to the same vote with shuffled reference labels (the chance it beats).
- **Code NMI** (:func:`code_nmi`): normalised mutual information between the codes and discretised
  actions (:func:`discretize_actions`: each action column cut into equal-frequency bins, the
  bins of all columns one label), next to the codes shuffled across rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hralign.errors import HRAlignError
from hralign.lam.evaluate import gap_targets
from hralign.metrics import knn_accuracy
from hralign.pairs import PairsFile

DOMAINS = ("human", "robot")


def _check_positive(value: Any, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise HRAlignError(f"`{name}` should be an integer >= {lo} but the value passed is {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------------
# Labels of rows: task, motion phase, discretised action
# ------------------------------------------------------------------------------------------------
def phase_labels(clips: np.ndarray, ts: np.ndarray, lengths: np.ndarray, gap: int, bins: int) -> np.ndarray:
    """Motion phase of each row: which of ``bins`` equal time bins of its clip's labelled span
    (t = 0 .. length - gap - 1) the row's t falls in."""
    bins = _check_positive(bins, "phase_bins", 1)
    span = np.maximum(np.asarray(lengths)[np.asarray(clips)] - gap, 1)
    return np.minimum((np.asarray(ts) * bins) // span, bins - 1).astype(np.int64)


def discretize_actions(actions: np.ndarray, bins: int = 3) -> np.ndarray:
    """One class per row: each non-constant action column cut into ``bins`` equal-frequency bins (its
    quantiles over the rows; 3 = backward / still / forward along that axis), the column bins read as
    one mixed-radix number. Constant columns carry nothing and are dropped."""
    bins = _check_positive(bins, "action_bins", 2)
    y = np.asarray(actions, np.float64)
    if y.ndim != 2 or len(y) == 0:
        raise HRAlignError(f"actions should be a non-empty (rows, columns) array but have shape {list(y.shape)}")
    label = np.zeros(len(y), np.int64)
    for col in y.T:
        if col.std() <= 1e-9:
            continue
        edges = np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1])
        label = label * bins + np.searchsorted(edges, col, side="right")
    return label


def code_ids(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(N, tokens) codes -> one id per row (the token tuple as a base-K number)."""
    codes = np.asarray(codes, np.int64)
    return (codes * (codebook_size ** np.arange(codes.shape[1])[::-1])).sum(1)


def code_nmi(codes: np.ndarray, classes: np.ndarray, codebook_size: int, seed: int = 0) -> dict[str, Any]:
    """NMI (arithmetic normalisation) of codes against action classes: ``nmi`` for the whole token
    tuple, ``nmi_per_token`` for each token, and ``nmi_shuffled`` (tuple codes permuted across rows:
    what the number of distinct codes alone gives, the bias to beat)."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    codes = np.asarray(codes, np.int64)
    classes = np.asarray(classes)
    if codes.ndim != 2 or codes.shape[0] != classes.shape[0] or codes.shape[0] == 0:
        raise HRAlignError(f"code NMI: codes {list(codes.shape)} and classes {list(classes.shape)} should have equal rows")
    ids = code_ids(codes, codebook_size)
    shuffled = ids[np.random.default_rng(seed).permutation(len(ids))]
    return {"nmi": float(nmi(classes, ids)), "nmi_shuffled": float(nmi(classes, shuffled)),
            "nmi_per_token": [float(nmi(classes, codes[:, j])) for j in range(codes.shape[1])],
            "action_classes": int(len(np.unique(classes))), "code_tuples": int(len(np.unique(ids))),
            "rows": int(len(ids))}


# ------------------------------------------------------------------------------------------------
# Cross-embodiment kNN on disjoint episodes
# ------------------------------------------------------------------------------------------------
def _halves(pairs: PairsFile, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per domain, (clips of half A, clips of half B): the file's pairs split in two by ``seed`` (a
    pair's clips fall in the same half, so a query never meets its frame-aligned partner); clips
    outside any pair split on their own."""
    rng = np.random.default_rng([seed, 17])
    out = {}
    order = rng.permutation(pairs.num_pairs)
    a_pairs = set(order[: len(order) // 2].tolist())
    for di, d in enumerate(DOMAINS):
        if d not in pairs.domains:
            continue
        n = pairs.num_clips(d)
        half = np.full(n, -1)
        for p in range(pairs.num_pairs):
            half[int(pairs.pairs[p][di])] = 0 if p in a_pairs else 1
        loose = np.flatnonzero(half < 0)
        half[loose] = rng.permutation(len(loose)) % 2
        out[d] = (np.flatnonzero(half == 0), np.flatnonzero(half == 1))
    return out


def cross_embodiment_knn(labels: dict[str, Any], pairs: PairsFile, k: int = 10, phase_bins: int = 4,
                         seed: int = 0) -> dict[str, Any]:
    """kNN accuracy of task and motion phase between embodiments, on disjoint episodes, for a labels
    file made from ``pairs`` (:func:`knn_consistency` on its rows; halves from :func:`_halves`)."""
    k = _check_positive(k, "knn_k", 1)
    gap = int(labels["attrs"]["gap"])
    present = [d for d in DOMAINS if d in labels and d in pairs.domains]
    if not present:
        raise HRAlignError("cross-embodiment kNN: the labels have no human or robot rows")
    halves = _halves(pairs, seed)
    cols: dict[str, list[np.ndarray]] = {"latents": [], "domain": [], "task": [], "phase": [], "half": []}
    for d in present:
        r = labels[d]
        clips = np.asarray(r["clip"])
        cols["latents"].append(np.asarray(r["latents"], np.float32))
        cols["domain"].append(np.full(len(clips), DOMAINS.index(d)))
        cols["task"].append(np.asarray(pairs.clip_tasks(d))[clips])
        cols["phase"].append(phase_labels(clips, r["t"], pairs.clip_lengths(d), gap, phase_bins))
        cols["half"].append(np.isin(clips, halves[d][1]).astype(np.int64))
    res = knn_consistency(*(np.concatenate(cols[c]) for c in ("latents", "domain", "task", "phase", "half")),
                          k=k, seed=seed)
    return {"k": k, "phase_bins": phase_bins, "tasks": int(pairs.num_tasks), **res}


def knn_consistency(latents: np.ndarray, domain: np.ndarray, task: np.ndarray, phase: np.ndarray, half: np.ndarray,
                    k: int = 10, seed: int = 0) -> dict[str, dict[str, float]]:
    """The cross-embodiment kNN on rows (latents, domain 0 human / 1 robot, task, phase, half 0/1).

    For each direction ``q->r`` of the domains present (``human->robot``, ``robot->human`` and the
    within-embodiment references ``human->human``, ``robot->robot``): queries are domain q's rows of
    one half, references domain r's rows of the other half (then the halves swap; the accuracies
    are averaged), cosine-weighted vote of ``k`` neighbours (:func:`hralign.metrics.knn_accuracy`).
    The halves split episodes (a pair's two clips in one half), so a query never meets its
    frame-aligned partner. ``*_shuffled``: the same vote with the reference labels permuted.
    """
    k = _check_positive(k, "knn_k", 1)
    latents = np.asarray(latents, np.float32)
    domain, half = np.asarray(domain), np.asarray(half)
    labels = {"task": np.asarray(task), "phase": np.asarray(phase)}
    rng = np.random.default_rng([seed, 19])
    res: dict[str, dict[str, float]] = {}
    present = [i for i in range(len(DOMAINS)) if (domain == i).any()]
    for q in present:
        for r in present:
            scores: dict[str, list[float]] = {}
            for qa, rb in ((0, 1), (1, 0)):
                qm, rm = (domain == q) & (half == qa), (domain == r) & (half == rb)
                if not qm.any() or not rm.any():
                    continue
                for what, lab in labels.items():
                    ref = lab[rm]
                    args = (latents[qm], lab[qm], latents[rm])
                    scores.setdefault(what, []).append(knn_accuracy(*args, ref, k=k))
                    scores.setdefault(f"{what}_shuffled", []).append(knn_accuracy(*args, ref[rng.permutation(len(ref))], k=k))
            if scores:
                res[f"{DOMAINS[q]}->{DOMAINS[r]}"] = {key: float(np.mean(v)) for key, v in scores.items()}
    return res


def halves_of_rows(pair: np.ndarray, domain: np.ndarray, clip: np.ndarray, seed: int = 0) -> np.ndarray:
    """Half (0/1) of each row from its pair index (-1: in no pair; then its own clip decides), by
    ``seed``: the rows of one pair share a half, as :func:`_halves` does for a pairs file."""
    pair, domain, clip = (np.asarray(a, np.int64) for a in (pair, domain, clip))
    rng = np.random.default_rng([seed, 17])
    pairs = np.unique(pair[pair >= 0])
    side = dict(zip(pairs.tolist(), (rng.permutation(len(pairs)) >= len(pairs) // 2).astype(np.int64).tolist()))
    half = np.array([side.get(p, -1) for p in pair.tolist()], np.int64)
    loose = half < 0
    if loose.any():
        units = np.unique(np.stack([domain[loose], clip[loose]], 1), axis=0)
        flip = dict(zip(map(tuple, units.tolist()), (rng.permutation(len(units)) % 2).tolist()))
        half[loose] = [flip[(d, c)] for d, c in zip(domain[loose].tolist(), clip[loose].tolist())]
    return half


# ------------------------------------------------------------------------------------------------
# Probe per domain
# ------------------------------------------------------------------------------------------------
def probe_domain(labels: dict[str, Any], pairs: PairsFile, domain: str, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """The action probe of ``domain``'s latents onto that domain's actions over the gap, with the
    proprio-only floor and latents + proprio when the file has ``/<domain>/state``."""
    from hralign.lam.evaluate import probe_labels

    return probe_labels(labels, pairs, domain, folds=folds, seed=seed, proprio=pairs.has(domain, "state"))


def measure_labels(labels: dict[str, Any], pairs: PairsFile, folds: int = 5, seed: int = 0, knn_k: int = 10,
                   phase_bins: int = 4, action_bins: int = 3) -> dict[str, Any]:
    """Probe (per domain with actions), cross-embodiment kNN and code NMI (per domain with actions)
    of a labels file (:func:`hralign.lam.labels.read_labels`) made from ``pairs``."""
    _check_positive(action_bins, "action_bins", 2)
    res: dict[str, Any] = {"probe": {}, "nmi": {}, "action_bins": action_bins}
    gap, k = int(labels["attrs"]["gap"]), int(labels["attrs"]["codebook_size"])
    for d in DOMAINS:
        if d not in labels or not len(labels[d]["t"]) or not pairs.has(d, "actions"):
            continue
        res["probe"][d] = probe_domain(labels, pairs, d, folds=folds, seed=seed)
        y = gap_targets(pairs, d, labels[d]["clip"], labels[d]["t"], gap)
        res["nmi"][d] = code_nmi(labels[d]["codes"], discretize_actions(y, action_bins), k, seed=seed)
    res["knn"] = cross_embodiment_knn(labels, pairs, k=knn_k, phase_bins=phase_bins, seed=seed)
    return res


# ------------------------------------------------------------------------------------------------
# Reconstruction on any pairs file
# ------------------------------------------------------------------------------------------------
def reconstruction(lam_dir: str | Path, pairs_path: str | Path, domains: tuple[str, ...] | None = None,
                   eval_pairs: int = 512, seed: int = 0) -> dict[str, Any]:
    """Per domain of ``pairs_path``: :func:`hralign.lam.train.evaluate_lam` (recon vs copy vs
    shuffled latents, perplexity) on ``eval_pairs`` frame pairs drawn by ``seed``."""
    from hralign.lam.data import FramePairs, check_frame_size
    from hralign.lam.io import load_lam
    from hralign.lam.train import FeatureTarget, evaluate_lam

    eval_pairs = _check_positive(eval_pairs, "eval_pairs", 1)
    model = load_lam(lam_dir)
    cfg = model.config
    target = FeatureTarget(str(cfg.target_encoder), cfg.target_image_size) if cfg.target == "features" else None
    pairs = PairsFile(pairs_path)
    out = {}
    for d in domains or pairs.domains:
        check_frame_size(pairs, (d,), cfg.image_size)
        data = FramePairs(pairs, (d,), cfg.gap)
        rows = np.sort(np.random.default_rng([seed, 7]).permutation(len(data))[:eval_pairs])
        r = evaluate_lam(model, data, rows, target, seed=seed)
        r.update(explained_fractions(r))
        out[d] = r
    pairs.close()
    return out


def explained_fractions(r: dict[str, Any]) -> dict[str, float]:
    """How much of the change the LAM explains: ``explained_vs_copy`` = 1 - recon / copy (the share
    of the x_t -> x_{t+H} change the prediction removes; docs/sim.md's "~3%") and
    ``explained_vs_shuffled`` = 1 - recon / shuffled (what the sample's own latent removes beyond
    another sample's: the part owed to the latent and not to the FDM sharpening x_t)."""
    def frac(base: float) -> float:
        return float(1.0 - r["recon_mse"] / base) if base > 0 else float("nan")
    return {"explained_vs_copy": frac(r["copy_mse"]), "explained_vs_shuffled": frac(r["shuffled_action_mse"])}


def measure_lam(labels_path: str | Path, pairs_path: str | Path, lam_dir: str | Path | None = None,
                folds: int = 5, seed: int = 0, knn_k: int = 10, phase_bins: int = 4, action_bins: int = 3,
                eval_pairs: int = 512) -> dict[str, Any]:
    """Everything above for a labels file of ``pairs_path`` (+ reconstruction when ``lam_dir`` is given)."""
    from hralign.lam.labels import read_labels

    pairs = PairsFile(pairs_path)
    res = measure_labels(read_labels(labels_path), pairs, folds=folds, seed=seed, knn_k=knn_k,
                         phase_bins=phase_bins, action_bins=action_bins)
    pairs.close()
    if lam_dir is not None:
        res["reconstruction"] = reconstruction(lam_dir, pairs_path, eval_pairs=eval_pairs, seed=seed)
    return res


def format_measures(res: dict[str, Any]) -> list[str]:
    """Text lines of :func:`measure_lam`'s result."""
    lines = []
    for d, p in res.get("probe", {}).items():
        floor = (f"; proprio only {p['action_probe_r2_proprio']:.3f}, latents + proprio "
                 f"{p['action_probe_r2_with_proprio']:.3f}" if "action_probe_r2_proprio" in p else "")
        lines.append(f"action probe R^2 {d} (latents -> {d} actions over the gap, {p['folds']}-fold by clip): "
                     f"{p['action_probe_r2']:.3f} (shuffled labels {p['action_probe_r2_shuffled']:.3f}){floor}")
    for d, n in res.get("nmi", {}).items():
        lines.append(f"code NMI {d} vs actions in {n['action_classes']} classes ({res['action_bins']} bins per "
                     f"column): {n['nmi']:.3f} (codes shuffled {n['nmi_shuffled']:.3f}); per token "
                     f"{', '.join(f'{x:.3f}' for x in n['nmi_per_token'])}")
    knn = res.get("knn", {})
    for key, v in knn.items():
        if "->" in key:
            lines.append(f"kNN {key} (k={knn['k']}, disjoint episodes): task {v['task']:.3f} (shuffled "
                         f"{v['task_shuffled']:.3f}), phase of {knn['phase_bins']} {v['phase']:.3f} (shuffled "
                         f"{v['phase_shuffled']:.3f})")
    for d, r in res.get("reconstruction", {}).items():
        lines.append(f"reconstruction {d}: MSE {r['recon_mse']:.5f} vs copy {r['copy_mse']:.5f} vs shuffled latents "
                     f"{r['shuffled_action_mse']:.5f} (explains {r['explained_vs_copy']:.3f} of the change, "
                     f"{r['explained_vs_shuffled']:.3f} beyond shuffled latents); perplexity "
                     f"{r['perplexity']:.2f} of {r['codebook_size']}")
    return lines
