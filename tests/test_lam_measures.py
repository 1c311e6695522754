"""hralign.lam.measures on constructed data: probe, action classes, code NMI, cross-embodiment kNN on
disjoint episodes, reconstruction figures, and `lam eval`'s bad options (one line, exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.lam.evaluate import gap_targets
from hralign.lam.measures import (_halves, code_ids, code_nmi, cross_embodiment_knn, discretize_actions, measure_labels,
                                  phase_labels, reconstruction)
from hralign.pairs import PairsFile


def _rows(pf: PairsFile, domain: str, gap: int):
    lengths = pf.clip_lengths(domain)
    clips = np.concatenate([np.full(max(n - gap, 0), c) for c, n in enumerate(lengths)]).astype(np.int64)
    ts = np.concatenate([np.arange(max(n - gap, 0)) for n in lengths]).astype(np.int64)
    return clips, ts


def _labels(pf: PairsFile, gap: int, latents_of, codes_of=None) -> dict:
    lab = {"attrs": {"gap": gap, "codebook_size": 8}}
    for d in ("human", "robot"):
        clips, ts = _rows(pf, d, gap)
        lat = latents_of(d, clips, ts)
        codes = codes_of(d, clips, ts) if codes_of else np.zeros((len(ts), 2), np.int64)
        lab[d] = {"clip": clips, "t": ts, "latents": lat, "codes": codes}
    return lab


def test_probe_of_measures_reads_action_latents_and_not_shuffled_ones(small_pairs):
    pf = PairsFile(small_pairs)
    rng = np.random.default_rng(0)

    def encode(d, clips, ts):  # the synthetic file has robot actions only
        if d == "human":
            return rng.normal(size=(len(ts), 4))
        y = gap_targets(pf, d, clips, ts, 1)
        return y + 1e-3 * rng.normal(size=y.shape)

    good = measure_labels(_labels(pf, 1, encode), pf)
    shuffled = measure_labels(_labels(pf, 1, lambda d, c, t: encode(d, c, t)[rng.permutation(len(t))]), pf)
    p, s = good["probe"]["robot"], shuffled["probe"]["robot"]
    assert p["action_probe_r2"] > 0.95 and s["action_probe_r2"] < 0.1
    assert p["action_probe_r2_proprio"] == s["action_probe_r2_proprio"]  # the floor never reads the latents
    assert p["action_probe_r2_with_proprio"] > 0.95 and "human" not in good["probe"]


def test_phase_labels_and_action_classes():
    # clip 0 has 9 frames, gap 1: labelled t 0..7 in 4 bins of 2
    assert phase_labels(np.zeros(8, int), np.arange(8), np.array([9]), 1, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    y = np.array([[-1.0, 5.0, 0.0], [0.0, 5.0, 1.0], [1.0, 5.0, 2.0], [2.0, 5.0, 3.0]])
    # column 1 is constant and dropped; 2 bins per column: below/above the median
    cls = discretize_actions(y, bins=2)
    assert cls.tolist() == [0, 0, 3, 3]
    with pytest.raises(HRAlignError, match="action_bins"):
        discretize_actions(y, bins=1)


def test_code_nmi_is_one_for_codes_that_name_the_action_and_low_for_noise():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 6, 2000)
    named = np.stack([classes, np.zeros_like(classes)], 1)  # token 0 names the class, token 1 is constant
    res = code_nmi(named, classes, 8)
    assert res["nmi"] == pytest.approx(1.0) and res["nmi_per_token"][0] == pytest.approx(1.0)
    assert res["nmi_per_token"][1] == pytest.approx(0.0) and res["nmi_shuffled"] < 0.02
    noise = code_nmi(rng.integers(0, 8, (2000, 2)), classes, 8)
    assert noise["nmi"] < 0.05
    assert code_ids(np.array([[1, 2]]), 8).tolist() == [10]


def test_knn_finds_task_and_phase_across_embodiments_on_disjoint_episodes(tiny_pairs):
    pf = PairsFile(tiny_pairs)
    tasks = {d: pf.clip_tasks(d) for d in ("human", "robot")}
    lengths = {d: pf.clip_lengths(d) for d in ("human", "robot")}
    rng = np.random.default_rng(0)

    def encode(d, clips, ts):  # task one-hot + phase one-hot (+ a domain offset), as a consistent LAM would give
        ph = phase_labels(clips, ts, lengths[d], 1, 4)
        x = np.concatenate([np.eye(4)[tasks[d][clips]], np.eye(4)[ph]], 1)
        return x + (0.3 if d == "robot" else 0.0) + 0.01 * rng.normal(size=x.shape)

    res = cross_embodiment_knn(_labels(pf, 1, encode), pf, k=3, phase_bins=4)
    for key in ("human->robot", "robot->human"):
        assert res[key]["task"] == pytest.approx(1.0) and res[key]["phase"] > 0.9
        assert res[key]["task_shuffled"] < 0.6 and res[key]["phase_shuffled"] < 0.6
    noise = cross_embodiment_knn(_labels(pf, 1, lambda d, c, t: rng.normal(size=(len(t), 8))), pf, k=3)
    assert noise["human->robot"]["task"] < 0.6
    # the two halves: a pair's clips in the same half, halves disjoint and covering every clip
    halves = _halves(pf, 0)
    for h, r in pf.pairs:
        assert (int(h) in halves["human"][0]) == (int(r) in halves["robot"][0])
    for d in ("human", "robot"):
        a, b = halves[d]
        assert not set(a) & set(b) and len(a) + len(b) == pf.num_clips(d)
    with pytest.raises(HRAlignError, match="knn_k"):
        cross_embodiment_knn(_labels(pf, 1, encode), pf, k=0)


def test_reconstruction_figures_of_a_trained_lam(tiny_lam, tiny_pairs):
    res = reconstruction(tiny_lam[0], tiny_pairs, eval_pairs=16)
    for d in ("human", "robot"):
        r = res[d]
        assert r["eval_pairs"] == 16 and 1.0 <= r["perplexity"] <= 8.0
        assert r["explained_vs_copy"] == pytest.approx(1 - r["recon_mse"] / r["copy_mse"])
        assert r["explained_vs_shuffled"] == pytest.approx(1 - r["recon_mse"] / r["shuffled_action_mse"])


def test_lam_eval_reports_the_measures_and_refuses_bad_options(tiny_lam, tiny_pairs, tmp_path):
    lam_dir = str(tiny_lam[0])
    labels = str(tmp_path / "l.h5")
    assert run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", lam_dir, "--out", labels)[0] == 0
    code, out, err = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", labels, "--lam", lam_dir,
                             "--eval-pairs", "16", "--knn-k", "3", "--json")
    assert code == 0, err
    res = json.loads(out)
    m = res["measures"]
    assert res["probe"] == m["probe"]["robot"] and "action_probe_r2_proprio" in res["probe"]
    assert set(m["reconstruction"]) == {"human", "robot"} and m["knn"]["k"] == 3
    assert {"human->robot", "robot->human"} <= set(m["knn"]) and 0 <= m["nmi"]["robot"]["nmi"] <= 1
    code, out, _ = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", labels, "--knn-k", "3")
    assert "kNN human->robot" in out and "code NMI robot" in out and "proprio only" in out
    for flag, value, name in (("--knn-k", "0", "--knn-k"), ("--action-bins", "1", "--action-bins"),
                              ("--phase-bins", "0", "--phase-bins"), ("--folds", "1", "--folds")):
        code, _, err = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", labels, flag, value)
        assert code == 2 and name in err and len(err.strip().splitlines()) == 1, err
