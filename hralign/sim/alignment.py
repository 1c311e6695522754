"""Robot->human retrieval and kNN task accuracy of an encoder variant on a benchmark pairs file.

Issue 10 asks for these beside the success table: the prototype found robot->human task accuracy
at chance (0.33) for a frozen encoder while human->human was 1.00, i.e. the gap HR-Align closes.
Clip descriptors are mean-pooled frame features (HR-Align pools over frames, mean by default);
human clips go through the frozen base, robot clips through the (adapted) robot encoder.
Metrics come from :mod:`hralign.metrics`. ``frame_error`` is the per-frame view a BC policy
has: how far each robot frame's features are from its human partner frame's, relative to how much
the human features vary.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.metrics import frame_error, knn_accuracy, retrieval_topk
from hralign.pairs import PairsFile
from hralign.policy import EncoderSource
from hralign.policy.features import features_by_clip


SUBSETS = ("all", "train", "val")


def alignment_metrics(pairs_path: str, source: EncoderSource, k: int = 5, subset: str = "all") -> dict[str, float]:
    """robot->human top-1/top-5 pair retrieval and kNN task accuracy (h->h, r->r leave-one-out, r->h).

    ``subset`` restricts everything to the pairs of the file's split (``val``: held out from
    adaptation, the honest before/after figure; ``train``: what the adapter was fit on).
    """
    from hralign.pairs.split import split_pairs

    if subset not in SUBSETS:
        raise HRAlignError(f"`subset` should be one of {', '.join(SUBSETS)} but the value passed is {subset!r}")
    pairs = PairsFile(pairs_path)
    p = pairs.pairs
    if subset != "all":
        train, val = split_pairs(pairs)
        p = p[np.sort(val if subset == "val" else train)]
    if len(p) < 2:
        raise HRAlignError(f"{pairs_path}: {len(p)} {subset} pair(s); alignment metrics need at least 2")
    robot_enc = source.robot_encoder()
    human_enc = source.human_encoder(robot_enc) if source.adapter is not None else robot_enc
    hf = features_by_clip(human_enc, pairs, "human", p[:, 0])
    rf = features_by_clip(robot_enc, pairs, "robot", p[:, 1])
    h_frames = [hf[int(c)].numpy() for c in p[:, 0]]  # per pair, in pair order
    r_frames = [rf[int(c)].numpy() for c in p[:, 1]]
    h = np.stack([x.mean(0) for x in h_frames]).astype(np.float32)  # clip descriptors: mean-pooled
    r = np.stack([x.mean(0) for x in r_frames]).astype(np.float32)
    th, tr = pairs.clip_tasks("human")[p[:, 0]], pairs.clip_tasks("robot")[p[:, 1]]
    ret = retrieval_topk(r, h, ks=(1, 5))
    kk = max(1, min(k, len(h) - 1))
    return {"r2h_top1": ret["top1"], "r2h_top5": ret["top5"],
            "knn_h2h": knn_accuracy(h, th, h, th, k=kk, exclude_self=True),
            "knn_r2r": knn_accuracy(r, tr, r, tr, k=kk, exclude_self=True),
            "knn_r2h": knn_accuracy(r, tr, h, th, k=kk),
            "frame_error": frame_error(h_frames, r_frames),
            "robot_cos": mean_pairwise_cosine(r), "human_cos": mean_pairwise_cosine(h),
            "chance": float(1.0 / max(1, len(np.unique(th)))), "pairs": int(len(p))}


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Mean cosine between distinct rows (clip descriptors): near 1 = every clip maps to one point."""
    if len(x) < 2:
        return float("nan")
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    c = u @ u.T
    n = len(x)
    return float((c.sum() - np.trace(c)) / (n * (n - 1)))


def robot_spread(pairs_path: str, source: EncoderSource, k: int = 5) -> dict[str, float | None]:
    """How spread out an encoder's robot clips are and whether they cluster by task (issue 17, must-show 2).

    Over every robot clip of the file (mean-pooled frame features through the robot encoder): the
    mean pairwise cosine (1 = every clip is one point, v1's base measured 0.9997), the relative
    spread (mean per-dimension std across clips / root-mean-square of the mean descriptor's entries:
    scale-free, 0 = one point) and leave-one-out kNN task accuracy robot->robot (k = ``k``) with its
    chance level.
    """
    pairs = PairsFile(pairs_path)
    if "robot" not in pairs.domains or pairs.num_clips("robot") < 2:
        raise HRAlignError(f"{pairs_path}: the spread needs at least 2 robot clips")
    clips = np.arange(pairs.num_clips("robot"))
    feats = features_by_clip(source.robot_encoder(), pairs, "robot", clips)
    r = np.stack([feats[int(c)].numpy().mean(0) for c in clips])
    frames = np.concatenate([feats[int(c)].numpy() for c in clips])
    out: dict[str, float | None] = {**spread_figures(r, pairs.clip_tasks("robot")[clips], k),
                                    "frame_rank": participation_ratio(frames), "probe_r2": None, "probe_r2_proprio": None}
    if pairs.has("robot", "actions") and pairs.has("robot", "state"):
        from hralign.pairs.split import split_pairs

        train, val = split_pairs(pairs)
        if len(train) and len(val):
            out.update(action_probe(pairs, feats, pairs.pairs[train, 1], pairs.pairs[val, 1]))
    return out


def participation_ratio(x: np.ndarray) -> float:
    """Effective number of directions of features [N, D] once each dimension is standardised:
    (sum of covariance eigenvalues)^2 / sum of their squares (D for isotropic features, 1 for one line).

    Why: R3M's BC head standardises its inputs (BatchNorm), so this is the geometry it trains on; a
    base whose robot features concentrate in a few directions trains it slowly even when a linear
    read-out of them (the action probe, solved in closed form) is good.
    """
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float("nan")
    z = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    ev = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False)), 0.0, None)
    return float(ev.sum() ** 2 / max((ev ** 2).sum(), 1e-300))


def action_probe(pairs: PairsFile, features: Mapping[int, torch.Tensor], train_clips: np.ndarray,
                 val_clips: np.ndarray, domain: str = "robot") -> dict[str, float]:
    """Held-out R^2 of a ridge regression from [features, proprio] to the expert's per-frame action.

    Why: a rollout cell costs minutes and its success is noisy at a few dozen rollouts; this asks
    the same question as BC (do these frozen features tell what the expert does next, beyond the
    proprioception?) in one fit on cached features. Fit on ``train_clips``, scored on ``val_clips``
    (1 = every action predicted, 0 = the mean action); ``probe_r2_proprio`` is the floor without
    images. scikit-learn's RidgeCV picks the penalty by leave-one-out on the training frames.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    from hralign.sim.evaluate import demo_table

    def rows(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = demo_table(pairs, {domain: features}, {domain: np.asarray(clips)})  # BC's own demo rows
        return tuple(t[k].double().numpy() for k in ("features", "state", "action"))

    ftr, s_tr, a_tr = rows(train_clips)
    fva, s_va, a_va = rows(val_clips)
    out = {}
    for key, (xtr, xva) in {"probe_r2": (np.hstack([ftr, s_tr]), np.hstack([fva, s_va])),
                            "probe_r2_proprio": (s_tr, s_va)}.items():
        scale = StandardScaler().fit(xtr)
        model = RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)).fit(scale.transform(xtr), a_tr)
        out[key] = float(r2_score(a_va, model.predict(scale.transform(xva))))
    return out


def spread_figures(descriptors: np.ndarray, tasks: np.ndarray, k: int = 5) -> dict[str, float]:
    """:func:`robot_spread`'s figures from clip descriptors [N, D] and their task ids [N]."""
    r = np.asarray(descriptors, np.float64)
    tasks = np.asarray(tasks)
    kk = max(1, min(k, len(r) - 1))
    rel = float(r.std(axis=0).mean() / max(np.linalg.norm(r.mean(axis=0)) / np.sqrt(r.shape[1]), 1e-12))
    r32 = r.astype(np.float32)
    return {"robot_cos": mean_pairwise_cosine(r), "relative_std": rel,
            "knn_r2r": knn_accuracy(r32, tasks, r32, tasks, k=kk, exclude_self=True),
            "chance": float(1.0 / len(np.unique(tasks))), "clips": int(len(r)), "tasks": int(len(np.unique(tasks)))}
