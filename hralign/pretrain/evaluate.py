"""What a pretraining run is judged by: held-out temporal order, task separation, the domain gap.

* held-out time-contrastive accuracy: over *every* triplet s0 < s1 < s2 of each held-out clip,
  the share where sim(s1, s2) > sim(s0, s2) and sim(s0, s1) > sim(s0, s2) (R3M's "aligned"
  metric, ``r3m/trainer.py``); chance is 1/3 (the s0-s2 pair is the least similar of three);
* kNN task accuracy (``hralign.metrics.knn_accuracy``): held-out clips classified by the clips
  of the other pairs; a clip's descriptor is [mean feature, end - start feature] over
  ``eval_frames`` evenly spaced frames (see :func:`embed_clips`);
* the domain gap: the same kNN on robot clips, robot clips classified against *human*
  references, and human->robot retrieval of each pair's partner (``retrieval_topk``);
* the frame participation ratio (``hralign.metrics.participation_ratio``) of each domain: how
  many directions the per-frame features spread over once each dimension is standardised, the
  geometry a BC head with BatchNorm trains on (a base in few directions fits slowly).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hralign.metrics import knn_accuracy, participation_ratio, retrieval_topk
from hralign.pretrain.data import PretrainData

MAX_TCN_FRAMES = 32  # frames per held-out clip for the exhaustive triplet count (32^3 / 6 triplets)


def _frame_positions(length: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, length - 1, num=min(count, length)).round().astype(np.int64))


@torch.no_grad()
def _embed(encoder: torch.nn.Module, frames: np.ndarray, batch_size: int = 128) -> torch.Tensor:
    out = [encoder(torch.from_numpy(frames[i:i + batch_size])).float().cpu() for i in range(0, len(frames), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def _clip_frame_features(encoder: torch.nn.Module, data: PretrainData, domain: str, clips: np.ndarray,
                         frames: int) -> list[torch.Tensor]:
    """Features float [T, D] of ``frames`` evenly spaced frames of each clip (T <= frames)."""
    pf = data.pairs
    lengths = pf.clip_lengths(domain)
    return [_embed(encoder, pf.read_clip(domain, int(c), _frame_positions(int(lengths[c]), frames)))
            for c in np.asarray(clips, dtype=np.int64)]


def _descriptors(per_clip: list[torch.Tensor]) -> np.ndarray:
    out = []
    for feats in per_clip:  # (T, D)
        q = max(1, len(feats) // 4)
        change = feats[-q:].mean(0) - feats[:q].mean(0)
        out.append(torch.cat([F.normalize(feats.mean(0), dim=0), F.normalize(change, dim=0)]))
    return torch.stack(out).numpy().astype(np.float32) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def embed_clips(encoder: torch.nn.Module, data: PretrainData, domain: str, clips: np.ndarray, frames: int = 8) -> np.ndarray:
    """Clip descriptors float32 [n, 2D]: [mean feature, end - start feature], each L2-normalised.

    ``frames`` evenly spaced frames are encoded; start/end are the means of the first/last quarter
    of them. The change term is there because a task is a *change* (R3M's language reward reads
    the task from the start and goal embeddings); a plain mean mostly measures where things are,
    which varies within a task.
    """
    return _descriptors(_clip_frame_features(encoder, data, domain, clips, frames))


def _similarity_matrix(e: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "l2":
        return -torch.cdist(e, e)
    e = torch.nn.functional.normalize(e, dim=-1)
    return e @ e.T


@torch.no_grad()
def heldout_tcn_accuracy(encoder: torch.nn.Module, data: PretrainData, domain: str, clips: np.ndarray,
                         similarity: str = "l2") -> float:
    """Share of all (s0 < s1 < s2) triplets of ``clips`` that the embedding orders in time (chance 1/3)."""
    hits, total = 0, 0
    lengths = data.pairs.clip_lengths(domain)
    for c in np.asarray(clips, dtype=np.int64):
        pos = _frame_positions(int(lengths[c]), MAX_TCN_FRAMES)
        feats = _embed(encoder, data.pairs.read_clip(domain, int(c), pos))
        s = _similarity_matrix(feats, similarity)  # (T, T)
        t = len(pos)
        i, j, k = torch.meshgrid(torch.arange(t), torch.arange(t), torch.arange(t), indexing="ij")
        valid = (i < j) & (j < k)
        ok = (s[i, k] < s[j, k]) & (s[i, j] > s[i, k])
        hits += int((ok & valid).sum())
        total += int(valid.sum())
    return hits / total if total else float("nan")


def evaluate(encoder: torch.nn.Module, data: PretrainData, similarity: str = "l2", frames: int = 8,
             k: int = 5) -> dict[str, float]:
    """All monitors of a pretraining run for ``encoder`` (put in eval mode here; restored after).

    Keys: ``tcn_acc_<domain>`` (held-out clips of each domain), ``knn_<domain>`` (held-out
    queries, other pairs' clips as references), ``knn_robot_to_human`` (robot queries, human
    references), ``h2r_top1`` / ``h2r_top5`` (human->robot retrieval over all pairs),
    ``knn_all_<domain>`` (leave-one-out over all clips) and ``frame_pr_<domain>`` (participation
    ratio of the ``frames`` encoded frames of every clip of the domain).
    """
    was_training = encoder.training
    encoder.eval()
    try:
        out: dict[str, float] = {}
        pf = data.pairs
        per_clip = {d: _clip_frame_features(encoder, data, d, np.arange(pf.num_clips(d)), frames) for d in pf.domains}
        emb = {d: _descriptors(per_clip[d]) for d in pf.domains}
        for d in pf.domains:
            held, ref = data.heldout[d], data.reference[d]
            tasks = data.tasks_of(d, np.arange(pf.num_clips(d)))
            if len(held):
                out[f"tcn_acc_{d}"] = heldout_tcn_accuracy(encoder, data, d, held, similarity)
                if len(ref):
                    out[f"knn_{d}"] = knn_accuracy(emb[d][held], tasks[held], emb[d][ref], tasks[ref], k=k)
            if len(tasks) > 1:
                out[f"knn_all_{d}"] = knn_accuracy(emb[d], tasks, emb[d], tasks, k=k, exclude_self=True)
            if per_clip[d]:
                out[f"frame_pr_{d}"] = participation_ratio(torch.cat(per_clip[d]).numpy())
        if "human" in emb and "robot" in emb:
            held_r, ref_h = data.heldout["robot"], data.reference["human"]
            if len(held_r) and len(ref_h):
                out["knn_robot_to_human"] = knn_accuracy(
                    emb["robot"][held_r], data.tasks_of("robot", held_r), emb["human"][ref_h], data.tasks_of("human", ref_h), k=k)
            if pf.num_pairs:
                top = retrieval_topk(emb["human"][pf.pairs[:, 0]], emb["robot"][pf.pairs[:, 1]], ks=(1, 5))
                out["h2r_top1"], out["h2r_top5"] = top["top1"], top["top5"]
        return out
    finally:
        encoder.train(was_training)
