"""hralign.analysis at scale, on small data: stratified samples, chunked latents.h5 (v2), FAISS
k-means (greedy init, sample-then-assign, determinism across threads), neighbour indexes chosen
by size with their recall, ``analyze --latents`` end to end, bad input. No UMAP here (slow)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import run_cli
from sklearn.cluster import KMeans

from hralign.analysis import (AnalyzeConfig, FaissKMeans, NeighborIndex, Rows, cross_knn, load_latents, open_latents,
                              stratified_sample)
from hralign.analysis.cluster import compute_threads
from hralign.analysis.report import density_layer
from hralign.analysis.synth import write_synthetic_latents
from hralign.errors import HRAlignError
from hralign.metrics import knn_accuracy


def blobs(n: int, k: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, d)) * 0.53
    y = rng.integers(0, k, n)
    return (c[y] + 0.25 * rng.normal(size=(n, d))).astype(np.float32), y


# ------------------------------------------------------------------------------------- sampling
def test_stratified_sample_is_proportional_seeded_and_covers_groups():
    domain = np.repeat([0, 1], [9000, 1000])
    task = np.concatenate([np.arange(9000) % 3, np.r_[np.zeros(990, int), np.ones(10, int)]])
    s = stratified_sample(domain, task, 1000, seed=0)
    assert len(s) == 1000 and (np.diff(s) > 0).all()
    assert (domain[s] == 1).sum() == 100  # 10% robot in, 10% robot out
    assert ((domain[s] == 1) & (task[s] == 1)).sum() == 1  # a rare group keeps its share (>= 1)
    np.testing.assert_array_equal(s, stratified_sample(domain, task, 1000, seed=0))
    assert not np.array_equal(s, stratified_sample(domain, task, 1000, seed=1))
    np.testing.assert_array_equal(stratified_sample(domain, task, 10**6), np.arange(10000))
    tiny = stratified_sample(domain, task, 3, seed=0)  # fewer slots than groups: still 3 rows
    assert len(tiny) == 3
    with pytest.raises(HRAlignError, match="`size` should be a positive integer"):
        stratified_sample(domain, task, 0)


# ---------------------------------------------------------------------------------- latents.h5
def test_latents_file_is_chunked_and_read_in_chunks(tmp_path):
    p = write_synthetic_latents(tmp_path / "l.h5", 5000, dim=16, num_clusters=4, num_tasks=3, seed=0)
    with h5py.File(p, "r") as h:
        assert h["views/frozen/latents"].chunks is not None and h.attrs["hralign_version"] == 2
    with open_latents(p) as f:
        ds = f.views["frozen"].latents.latents
        assert isinstance(ds, h5py.Dataset)  # stays on disk
        full = ds[()]
        rows = Rows(ds, chunk=777)
        np.testing.assert_array_equal(np.concatenate([c for _, c in rows.chunks()]), full)
        idx = np.array([0, 5, 776, 777, 4999])
        np.testing.assert_array_equal(rows.take(idx), full[idx])
        np.testing.assert_allclose(Rows(ds, transform=lambda x: 2 * x, chunk=1000).take(idx), 2 * full[idx])
    # same arguments -> same file contents (per-chunk seeded generators)
    q = write_synthetic_latents(tmp_path / "m.h5", 5000, dim=16, num_clusters=4, num_tasks=3, seed=0)
    np.testing.assert_array_equal(load_latents(q)[0]["frozen"].latents.latents, full)


def test_latents_of_another_version_is_one_line_error(tmp_path):
    p = write_synthetic_latents(tmp_path / "l.h5", 200, dim=8, num_clusters=2, num_tasks=2)
    with h5py.File(p, "a") as h:
        h.attrs["hralign_version"] = 1
    with pytest.raises(HRAlignError, match=r"`hralign_version` is 1, expected 2 \(written by another hralign version"):
        open_latents(p)
    code, _, stderr = run_cli("analyze", "--latents", str(p), "--out", str(tmp_path / "r"), "--no-umap", "--k", "2")
    assert code == 2 and stderr.strip().count("\n") == 0 and "hralign_version" in stderr
    assert not (tmp_path / "r").exists()


def test_cli_max_points_zero_and_input_conflicts(tmp_path):
    p = write_synthetic_latents(tmp_path / "l.h5", 200, dim=8, num_clusters=2, num_tasks=2)
    code, _, stderr = run_cli("analyze", "--latents", str(p), "--out", str(tmp_path / "r"), "--max-points", "0")
    assert code == 2 and stderr.strip().count("\n") == 0
    assert "`--max-points` should be an integer >= 1 but the value passed is 0" in stderr
    code, _, stderr = run_cli("analyze", "--latents", str(p), "--out", str(tmp_path / "r"), "--k", "8",
                              "--max-points", "4", "--no-umap")
    assert code == 2 and "--k 8 is larger than --max-points 4" in stderr and stderr.strip().count("\n") == 0
    with pytest.raises(HRAlignError, match="not both"):
        AnalyzeConfig(pairs="a.h5", latents=str(p), out="o")


# --------------------------------------------------------------------------------------- k-means
def test_kmeans_sample_then_assign_matches_sklearn_quality_and_is_thread_independent():
    x, y = blobs(6000, 12, 32, seed=1)
    km = FaissKMeans(k=12, seed=0, max_points=2000, threads=1).fit(x)
    assert km.n_train_points_ == 2000 and km.labels_.shape == (6000,)
    sk = KMeans(n_clusters=12, n_init=1, random_state=0).fit(x)
    assert km.inertia_ <= 1.01 * sk.inertia_  # within 1% of scikit-learn (or better)
    two = FaissKMeans(k=12, seed=0, max_points=2000, threads=2).fit(x)
    np.testing.assert_array_equal(km.labels_, two.labels_)  # same seed, other thread count: same clusters
    np.testing.assert_array_equal(km.cluster_centers_, two.cluster_centers_)
    labels, d2 = km.assign(Rows(x, chunk=1000))  # chunked assignment == in-memory
    np.testing.assert_array_equal(labels, km.labels_)
    assert d2.sum() == pytest.approx(km.inertia_, rel=1e-6)
    with pytest.raises(HRAlignError, match="`init_size`"):
        FaissKMeans(k=12, init_size=3).fit(x)


def test_kmeans_minibatch_method_is_seeded_thread_independent_and_chosen_by_size(monkeypatch):
    from hralign.analysis import cluster

    x, y = blobs(6000, 8, 16, seed=3)
    a = FaissKMeans(k=8, seed=0, method="minibatch", threads=1).fit(x)
    b = FaissKMeans(k=8, seed=0, method="minibatch", threads=2).fit(x)
    assert a.method_ == "minibatch" and a.n_train_points_ == 6000
    np.testing.assert_array_equal(a.labels_, b.labels_)  # same seed: same clusters, whatever the threads
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert not np.array_equal(a.cluster_centers_, FaissKMeans(k=8, seed=1, method="minibatch").fit(x).cluster_centers_)
    sk = KMeans(n_clusters=8, n_init=1, random_state=0).fit(x)
    assert a.inertia_ <= 1.01 * sk.inertia_
    # the size rule: MiniBatchKMeans from both thresholds on (training points and k), faiss below, faiss on GPU
    monkeypatch.setattr(cluster, "MINIBATCH_FROM", {"n_train": 1000, "k": 8})
    assert cluster.choose_method(999, 8, gpu=False) == "faiss" and cluster.choose_method(1000, 8, gpu=False) == "minibatch"
    assert cluster.choose_method(10**6, 7, gpu=False) == "faiss"
    assert cluster.choose_method(10**6, 8, gpu=True) == "faiss"
    assert FaissKMeans(k=8, seed=0, max_points=900).fit(x).method_ == "faiss"
    assert FaissKMeans(k=8, seed=0, max_points=2000).fit(x).method_ == "minibatch"
    with pytest.raises(HRAlignError, match="`method` should be one of auto, faiss, minibatch"):
        FaissKMeans(k=8, method="lloyd").fit(x)


def test_compute_threads_restores_faiss_setting():
    import faiss

    before = faiss.omp_get_max_threads()
    with compute_threads(1) as n:
        assert n == 1 and faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


# ------------------------------------------------------------------------------------ neighbours
def test_neighbor_index_exact_below_threshold_ivf_above_with_recall():
    x, y = blobs(4000, 6, 24, seed=2)
    dom = np.repeat([0, 1], 2000)
    exact = cross_knn(x, dom, y, k=10)
    assert exact["knn_index"].startswith("exact") and exact["knn_robot_to_human_recall"] == 1.0
    assert exact["knn_robot_to_human"] == pytest.approx(knn_accuracy(x[dom == 1], y[dom == 1], x[dom == 0], y[dom == 0], k=10))
    approx = cross_knn(x, dom, y, k=10, exact_max=500, seed=0)
    assert approx["knn_index"].startswith("IVF-Flat")
    assert 0.8 <= approx["knn_robot_to_human_recall"] <= 1.0
    assert abs(approx["knn_cross"] - exact["knn_cross"]) < 0.05
    assert cross_knn(x, dom, y, k=10, exact_max=500, seed=0) == approx  # seeded: same index, same metrics
    idx = NeighborIndex(exact_max=500, seed=0).fit(Rows(x, chunk=512), dom == 0)
    ex = idx.exact_search(x[:50], 5)  # chunked brute force == flat search
    ref = np.flatnonzero(dom == 0)
    d2 = ((x[:50, None] / np.linalg.norm(x[:50], axis=1)[:, None, None]
           - (x[ref] / np.linalg.norm(x[ref], axis=1, keepdims=True))[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.sort(ex, 1), np.sort(ref[np.argsort(d2, 1)[:, :5]], 1))


def test_density_layer_counts_all_points():
    xy = np.random.default_rng(0).random((10000, 2))
    layer = density_layer(xy, bins=(10, 5))
    import base64

    v = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(5, 10)
    assert v.max() == 255 and v.min() > 0  # uniform points: every bin drawn


# ------------------------------------------------------------------------------------ pipeline
@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    return write_synthetic_latents(tmp_path_factory.mktemp("lat") / "latents.h5", 6000, dim=32, num_clusters=8,
                                   num_tasks=4, clip_len=20, seed=0)


def test_analyze_latents_file_end_to_end_and_deterministic(synth_file, tmp_path):
    args = ["--latents", str(synth_file), "--k", "8", "--no-umap", "--max-points", "1500", "--scatter-points", "300"]
    code, stdout, stderr = run_cli("analyze", *args, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    assert "stratified sample of 1500" in stdout and "recall@k of that search" in stdout
    code, _, stderr = run_cli("analyze", *args, "--out", str(tmp_path / "b"))
    assert code == 0, stderr
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert a["views"] == b["views"]  # same seed: same metrics
    la, lb = (load_latents(tmp_path / r / "latents.h5")[0]["frozen"] for r in ("a", "b"))
    np.testing.assert_array_equal(la.clusters, lb.clusters)  # ... and the same clusters
    np.testing.assert_array_equal(la.map2d, lb.map2d)
    m = a["views"]["frozen"]
    assert m["num_latents"] == 6000 and m["num_sampled"] == 1500 and m["knn_robot_to_human_recall"] == 1.0
    assert m["nmi_pooled"] > 0.2 and m["paired_agreement"] > 0.7  # synthetic pairs share clusters frame by frame
    assert a["peak_rss_mb"] > 0 and set(a["timings"]) >= {"latents_s", "sample_s", "cluster_s", "map_s", "metrics_s"}
    html = (tmp_path / "a" / "report.html").read_text()
    assert '"density":' in html and "300 points shown" in html and "density of all\n6000 latents" in html
    assert la.latents.latents.shape == (6000, 32)  # the input latents are copied into the report's latents.h5
    code, stdout, _ = run_cli("analyze", *args, "--out", str(tmp_path / "a"), "--overwrite")
    assert code == 0 and "reused from the previous run: latents, clusters[frozen], map[frozen]" in stdout


def test_analyze_one_embodiment_latents(tmp_path):
    p = write_synthetic_latents(tmp_path / "h.h5", 3000, dim=16, num_clusters=4, num_tasks=3, embodiments=1)
    out = tmp_path / "r"
    code, stdout, stderr = run_cli("analyze", "--latents", str(p), "--out", str(out), "--k", "4", "--no-umap",
                                   "--max-points", "1000")
    assert code == 0, stderr
    assert "has no robot latents: analysis of the human embodiment only" in stdout
    m = json.loads((out / "metrics.json").read_text())["views"]["frozen"]
    assert m["num_robot"] == 0 and m["knn_cross"] is None and m["embodiment_mixing"] is None
    assert m["knn_index"] is None and m["nmi_human"] is not None
