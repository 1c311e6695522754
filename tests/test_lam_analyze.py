"""`hralign analyze` with a LAM shows the cross-embodiment consistency figures of hralign.lam.measures
(kNN of task and phase on disjoint episodes, code NMI vs actions) in its report and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hralign.analysis.latents import LatentSet
from hralign.analysis.run import lam_consistency


def test_lam_consistency_on_constructed_latents():
    rng = np.random.default_rng(0)
    n_pairs, frames = 12, 8
    rows = [(d, p, t) for d in (0, 1) for p in range(n_pairs) for t in range(frames)]
    dom, pair, t = (np.array(c) for c in zip(*rows))
    task = pair % 3
    phase = t * 4 // frames
    lat = np.concatenate([np.eye(3)[task], np.eye(4)[phase]], 1) + 0.01 * rng.normal(size=(len(rows), 7))
    actions = np.where(dom[:, None] == 1, np.stack([phase, task], 1).astype(np.float64), np.nan)
    codes = (phase * 3 + task)[:, None]
    ls = LatentSet(lat.astype(np.float32), dom.astype(np.int8), pair, pair, task, t, 1, actions, codes)
    m = lam_consistency(ls, np.arange(len(rows)))
    assert m["lam_knn_task_human_to_robot"] == pytest.approx(1.0) and m["lam_knn_phase_human_to_robot"] > 0.9
    assert m["lam_knn_task_human_to_robot_shuffled"] < 0.7 and m["lam_code_nmi_actions"] > 0.9
    assert m["lam_code_nmi_actions_shuffled"] < 0.3


def test_analyze_with_a_lam_reports_the_consistency_figures(tiny_lam, tiny_pairs, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = run_cli("analyze", "--pairs", str(tiny_pairs), "--encoder", f"lam:{tiny_lam[0]}", "--out", str(out),
                                "--k", "4", "--no-umap")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())["views"]["frozen"]
    for key in ("lam_knn_task_human_to_robot", "lam_knn_phase_human_to_robot", "lam_knn_task_robot_to_human",
                "lam_code_nmi_actions"):
        assert 0.0 <= m[key] <= 1.0
    assert "LAM kNN task h" in (out / "report.html").read_text() and "LAM code NMI" in stdout
