"""Robot->human retrieval, kNN task accuracy and robot-clip spread of an encoder on a benchmark pairs file.

These stand beside the success table: robot->human task accuracy at chance for a frozen encoder
while human->human is near 1 is the gap HR-Align closes (Zhou et al., 2024).
Clip descriptors are mean-pooled frame features (HR-Align pools over frames, mean by default);
human clips go through the frozen base, robot clips through the (adapted) robot encoder.
Metrics come from :mod:`hralign.metrics`. ``frame_error`` is the per-frame view a BC policy
has: how far each robot frame's features are from its human partner frame's, relative to how much
the human features vary.
"""

from __future__ import annotations

import numpy as np

from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2, frame_error, knn_accuracy, participation_ratio, retrieval_topk
from hralign.pairs import PairsFile
from hralign.policy import EncoderSource
from hralign.policy.features import features_by_clip


SUBSETS = ("all", "train", "val")
# the figures every cached spread entry must have (an older cache without one is recomputed)
SPREAD_KEYS = ("robot_cos", "relative_std", "knn_r2r", "frame_rank", "action_probe_r2", "action_probe_r2_proprio")


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
    """How spread out an encoder's robot clips are, whether they cluster by task, and whether their
    frames carry the expert's action.

    Over every robot clip of the file (mean-pooled frame features through the robot encoder): the
    mean pairwise cosine (1 = every clip is one point), the relative spread (mean per-dimension std
    across clips / root-mean-square of the mean descriptor's entries: scale-free, 0 = one point),
    leave-one-out kNN task accuracy robot->robot (k = ``k``) with its chance level, the frames'
    :func:`participation_ratio` and, when the file has robot actions and state, the action probe
    (:func:`hralign.metrics.action_probe_r2` from frame features to the expert's action, 5 folds
    grouped by clip) with its proprio-only floor (``action_probe_r2_proprio``) and features +
    proprio (``action_probe_r2_with_proprio``).
    """
    pairs = PairsFile(pairs_path)
    if "robot" not in pairs.domains or pairs.num_clips("robot") < 2:
        raise HRAlignError(f"{pairs_path}: the spread needs at least 2 robot clips")
    clips = np.arange(pairs.num_clips("robot"))
    feats = features_by_clip(source.robot_encoder(), pairs, "robot", clips)
    r = np.stack([feats[int(c)].numpy().mean(0) for c in clips])
    frames = np.concatenate([feats[int(c)].numpy() for c in clips])
    out: dict[str, float | None] = {**spread_figures(r, pairs.clip_tasks("robot")[clips], k),
                                    "frame_rank": participation_ratio(frames), "action_probe_r2": None,
                                    "action_probe_r2_proprio": None, "action_probe_r2_with_proprio": None}
    if pairs.has("robot", "actions") and pairs.has("robot", "state"):
        actions = np.concatenate([pairs.read_clip("robot", int(c), name="actions") for c in clips])
        state = np.concatenate([pairs.read_clip("robot", int(c), name="state") for c in clips])
        groups = np.repeat(clips, [len(feats[int(c)]) for c in clips])  # (N,) the clip of each frame
        probe = action_probe_r2(frames, actions, groups, proprio=state)
        out.update({key: probe[key] for key in ("action_probe_r2", "action_probe_r2_proprio",
                                                 "action_probe_r2_with_proprio")})
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


__all__ = ["SPREAD_KEYS", "SUBSETS", "alignment_metrics", "mean_pairwise_cosine", "participation_ratio", "robot_spread",
           "spread_figures"]
