"""Frozen vs adapted, side by side, on held-out pairs (HR-Align's retrieval view + kNN tasks)."""

from __future__ import annotations

import numpy as np

from hralign.metrics import alignment_margin, knn_accuracy, retrieval_topk


def compare(human: np.ndarray, frozen: np.ndarray, adapted: np.ndarray, tasks: np.ndarray, val: np.ndarray,
            train: np.ndarray, k: int = 20) -> dict[str, dict[str, float]]:
    """Metrics of the frozen and the adapted robot features.

    Parameters
    ----------
    human, frozen, adapted : ndarray of shape (n_pairs, D)
        Pooled features of every pair: frozen human, frozen robot, adapted robot.
    tasks : ndarray of shape (n_pairs,)
        Task of each pair.
    val, train : ndarray of int
        Pair indices held out / trained on. Retrieval is among validation pairs; kNN task
        accuracy queries validation clips of one embodiment against training clips of the other.
    """
    out: dict[str, dict[str, float]] = {}
    for name, robot in (("frozen", frozen), ("adapted", adapted)):
        h2r = retrieval_topk(human[val], robot[val])
        r2h = retrieval_topk(robot[val], human[val])
        out[name] = {
            "h2r_top1": h2r["top1"], "h2r_top5": h2r["top5"],
            "r2h_top1": r2h["top1"], "r2h_top5": r2h["top5"],
            "knn_r2h": knn_accuracy(robot[val], tasks[val], human[train], tasks[train], k=k),
            "knn_h2r": knn_accuracy(human[val], tasks[val], robot[train], tasks[train], k=k),
            "margin": alignment_margin(human[val], robot[val], frozen[val]),
        }
    return out


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A short text table: one row per metric, frozen | adapted | difference."""
    rows = [("metric", "frozen", "adapted", "adapted-frozen")]
    labels = {"h2r_top1": "human->robot top-1", "h2r_top5": "human->robot top-5", "r2h_top1": "robot->human top-1",
              "r2h_top5": "robot->human top-5", "knn_r2h": "kNN task acc (robot->human)",
              "knn_h2r": "kNN task acc (human->robot)", "margin": "margin cos(h,a)-cos(h,r)",
              "frame_error": "frame error |r_t-h_t|^2/var(h)"}
    for key, label in labels.items():
        if key not in metrics["frozen"]:
            continue
        f, a = metrics["frozen"][key], metrics["adapted"][key]
        rows.append((label, f"{f:.3f}", f"{a:.3f}", f"{a - f:+.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)
