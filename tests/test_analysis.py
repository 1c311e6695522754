"""hralign.analysis: clustering, metrics, latent extraction, pipeline outputs, CLI errors.

Small arrays and the tiny synthetic pairs file; no UMAP here (its numba compile takes a minute:
see test_analysis_umap.py, marked slow).
"""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from sklearn.metrics import normalized_mutual_info_score

from hralign.analysis import (AnalyzeConfig, FaissKMeans, PCAEmbedding, consistency_metrics, cross_knn,
                              embodiment_mixing, feature_differences, knn_search, load_latents,
                              paired_agreement, run_analysis)
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile, PairsWriter


def blobs(n_per: int, k: int, d: int, spread: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + spread * rng.normal(size=(len(y), d))).astype(np.float32), y


# ---------------------------------------------------------------------------------------- k-means
def test_kmeans_recovers_blobs_and_is_seeded():
    x, y = blobs(300, 5, 16)
    a = FaissKMeans(k=5, nredo=3, seed=1).fit(x)
    assert normalized_mutual_info_score(y, a.labels_) > 0.99
    b = FaissKMeans(k=5, nredo=3, seed=1).fit(x)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.predict(x), a.labels_)
    dist = a.transform(x)
    assert dist.shape == (1500, 5)
    np.testing.assert_array_equal(dist.argmin(1), a.labels_)
    assert a.inertia_ == pytest.approx(float((dist.min(1) ** 2).sum()), rel=1e-3)


def test_kmeans_trains_on_all_points():
    # 3000 points, k=2: faiss' default would silently train on 2 * 256 = 512 of them. Trained on
    # all points, Lloyd's fixed point puts each centroid at the exact mean of its members.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    km = FaissKMeans(k=2, niter=100, seed=0).fit(x)
    assert km.n_train_points_ == 3000
    for c in range(2):
        np.testing.assert_allclose(km.cluster_centers_[c], x[km.labels_ == c].mean(0), atol=1e-4)
    capped = FaissKMeans(k=2, niter=100, seed=0, max_points=512).fit(x)
    assert capped.n_train_points_ == 512
    gaps = [np.abs(capped.cluster_centers_[c] - x[capped.labels_ == c].mean(0)).max() for c in range(2)]
    assert max(gaps) > 1e-3  # a subsample's centroids are not the full data's means


def test_kmeans_spherical_and_bad_input():
    x, _ = blobs(50, 3, 8)
    km = FaissKMeans(k=3, spherical=True).fit(x)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, atol=1e-5)
    with pytest.raises(HRAlignError, match=r"`k` \(200\) is larger than the number of points \(150\)"):
        FaissKMeans(k=200).fit(x)
    with pytest.raises(HRAlignError, match="`nredo`"):
        FaissKMeans(k=3, nredo=0).fit(x)
    with pytest.raises(HRAlignError, match="NaN"):
        FaissKMeans(k=3).fit(np.full((10, 2), np.nan))
    with pytest.raises(HRAlignError, match="not fitted"):
        FaissKMeans(k=3).predict(x)


def test_knn_search_matches_brute_force():
    x, _ = blobs(20, 3, 4, seed=2)
    x[5] = x[6]  # a duplicate: self must still come first
    ids, d = knn_search(x, 5)
    assert (ids[:, 0] == np.arange(len(x))).all()
    brute = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.testing.assert_allclose(d, np.take_along_axis(brute, ids, 1), atol=1e-4)
    np.testing.assert_allclose(np.sort(d[:, 1:], 1), np.sort(brute, 1)[:, 1:5], atol=1e-4)


def test_pca_embedding_shape():
    x, _ = blobs(10, 2, 6)
    z = PCAEmbedding().fit_transform(x)
    assert z.shape == (20, 2) and np.isfinite(z).all()
    assert abs(np.corrcoef(z[:, 0], np.repeat([0, 1], 10))[0, 1]) > 0.9  # PC1 separates the two blobs


# ---------------------------------------------------------------------------------------- metrics
def test_embodiment_mixing():
    dom = np.array([0, 1] * 50)
    assert embodiment_mixing(np.arange(100) // 10, dom) == pytest.approx(1.0)  # every cluster half/half
    assert embodiment_mixing(dom.copy(), dom) == pytest.approx(0.0)  # clusters = embodiments
    assert embodiment_mixing(np.zeros(100, int), np.zeros(100, int)) is None  # one embodiment
    # 3x more robot than human latents, every cluster proportionally mixed: still 1 (balanced shares)
    dom2 = np.array([0] + [1] * 3 + [0] + [1] * 3)
    assert embodiment_mixing(np.array([0] * 4 + [1] * 4), dom2) == pytest.approx(1.0)
    assert embodiment_mixing(np.array([0] * 4 + [1] * 4), dom2, balance=False) < 0.9


def test_paired_agreement():
    dom = np.array([0, 0, 1, 1, 0, 1])
    pair = np.array([0, 0, 0, 0, 1, 1])
    t = np.array([0, 1, 0, 1, 0, 0])
    labels = np.array([3, 4, 3, 5, 7, 7])
    assert paired_agreement(labels, dom, pair, t) == pytest.approx(2 / 3)
    assert paired_agreement(labels, np.zeros(6, int), pair, t) is None


def test_cross_knn_detects_aligned_embodiments():
    x, y = blobs(40, 4, 16, seed=3)
    rng = np.random.default_rng(0)
    lat = np.concatenate([x, x + 0.1 * rng.normal(size=x.shape)]).astype(np.float32)
    dom = np.repeat([0, 1], len(x))
    task = np.concatenate([y, y])
    good = cross_knn(lat, dom, task, k=20)
    assert good["knn_robot_to_human"] == 1.0 and good["knn_human_to_robot"] == 1.0
    shuffled = np.concatenate([x, rng.normal(size=x.shape) * 3]).astype(np.float32)
    bad = cross_knn(shuffled, dom, task, k=20)
    assert bad["knn_cross"] < 0.6
    assert cross_knn(lat, np.zeros(len(lat), int), task)["knn_cross"] is None


def test_consistency_metrics_perfect_alignment():
    x, y = blobs(30, 3, 8, spread=0.05, seed=4)
    n = len(x)
    lat = np.concatenate([x, x])
    dom = np.repeat([0, 1], n)
    labels = np.concatenate([y, y])
    t = np.tile(np.arange(30), 6)
    pair = np.concatenate([y, y])
    m = consistency_metrics(lat, labels, dom, labels, pair, t, actions=np.concatenate([np.full((n, 2), np.nan), x[:, :2]]),
                            clip=np.concatenate([np.arange(n) // 10] * 2))
    assert m["nmi_pooled"] == pytest.approx(1.0) and m["ari_robot"] == pytest.approx(1.0)
    assert m["embodiment_mixing"] == pytest.approx(1.0)
    assert m["paired_agreement"] == pytest.approx(1.0)
    assert m["knn_cross"] == pytest.approx(1.0)
    assert m["action_probe_r2"] > 0.99
    assert m["silhouette"] > 0.8
    json.dumps(m)  # JSON-able


# ---------------------------------------------------------------------------------------- pipeline
class PoolEncoder(torch.nn.Module):
    """A tiny deterministic Encoder-contract module: 4x4 average-pooled pixels (48-d)."""

    name = "pool4"
    feature_dim = 48
    image_size = 32

    def __init__(self, scale_robot_like: float = 1.0) -> None:
        super().__init__()
        self.scale = scale_robot_like
        self.spec = {"name": f"pool4x{scale_robot_like}"}

    def forward(self, images):
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
        return F.adaptive_avg_pool2d(x, 4).flatten(1) * self.scale


def test_feature_differences():
    f = [np.arange(10, dtype=np.float32).reshape(5, 2), np.ones((2, 2), np.float32)]
    zs, ts = feature_differences(f, 2)
    np.testing.assert_array_equal(zs[0], np.full((3, 2), 4.0))
    np.testing.assert_array_equal(ts[0], [0, 1, 2])
    assert zs[1].shape == (0, 2)


@pytest.fixture(scope="module")
def analysis_run(tiny_pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "report"
    cfg = AnalyzeConfig(pairs=str(tiny_pairs), out=str(out), encoder="pool4", adapter="toy", gap=2, k=4,
                        umap=False, batch_size=20, progress=False)
    return cfg, run_analysis(cfg, PoolEncoder(), PoolEncoder(2.0), log=lambda s: None)


def test_pipeline_outputs(analysis_run, tiny_pairs):
    cfg, res = analysis_run
    out = res.out
    for name in ("latents.h5", "metrics.json", "report.html", "pca_by_embodiment.png", "pca_by_task.png",
                 "pca_by_cluster.png", "gallery_frozen.png", "gallery_adapted.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["views"]) == {"frozen", "adapted"}
    assert summary["map_method"] == "pca"
    # 12 pairs x 2 domains x (8 - gap) latents
    assert summary["views"]["frozen"]["num_human"] == 12 * 6 and summary["views"]["frozen"]["num_robot"] == 12 * 6
    assert summary["views"]["frozen"]["action_probe_r2"] is not None  # synth robot clips have actions
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "data:image/jpeg;base64," in html
    assert "http://" not in html and "https://" not in html  # self-contained, no CDN
    assert "PCA (first two components; UMAP off)" in html


def test_latents_are_feature_differences(analysis_run, tiny_pairs):
    cfg, res = analysis_run
    views, tasks, _ = load_latents(res.out / "latents.h5")
    pf = PairsFile(tiny_pairs)
    assert tasks == pf.tasks
    fr, ad = views["frozen"], views["adapted"]
    ls = fr.latents
    enc = PoolEncoder()
    for i in (0, len(ls) // 2, len(ls) - 1):
        d = ("human", "robot")[ls.domain[i]]
        frames = pf.read_clip(d, int(ls.clip[i]), frames=[int(ls.t[i]), int(ls.t[i]) + 2])
        f = enc(frames).numpy()
        np.testing.assert_allclose(ls.latents[i], f[1] - f[0], atol=1e-5)
        # adapted view: human through the frozen encoder, robot through the adapted one (x2 here)
        np.testing.assert_allclose(ad.latents.latents[i], (f[1] - f[0]) * (2.0 if d == "robot" else 1.0), atol=1e-5)
        assert ls.task[i] == pf.clip_tasks(d)[ls.clip[i]]
        assert pf.pairs[ls.pair[i], ls.domain[i]] == ls.clip[i]
    assert fr.clusters.shape == (len(ls),) and fr.map2d.shape == (len(ls), 2)
    assert ls.actions.shape[0] == len(ls) and np.isnan(ls.actions[ls.domain == 0]).all()
    np.testing.assert_allclose(ls.actions[ls.domain == 1][0],
                               pf.read_clip("robot", int(ls.clip[ls.domain == 1][0]), name="actions")[
                                   ls.t[ls.domain == 1][0]:ls.t[ls.domain == 1][0] + 2].mean(0), atol=1e-6)


def test_rerun_reuses_cache_and_refuses_without_overwrite(analysis_run):
    cfg, res = analysis_run
    with pytest.raises(HRAlignError, match="exists; pass --overwrite"):
        run_analysis(cfg, PoolEncoder(), PoolEncoder(2.0))
    cfg2 = AnalyzeConfig(**{**cfg.__dict__, "overwrite": True})
    res2 = run_analysis(cfg2, PoolEncoder(), PoolEncoder(2.0), log=lambda s: None)
    assert "latents" in res2.reused and "clusters[adapted]" in res2.reused and "map[frozen]" in res2.reused
    assert res2.metrics == res.metrics
    cfg3 = AnalyzeConfig(**{**cfg.__dict__, "overwrite": True, "k": 3})  # new k: latents reused, clusters not
    res3 = run_analysis(cfg3, PoolEncoder(), PoolEncoder(2.0), log=lambda s: None)
    assert "latents" in res3.reused and not any(r.startswith("clusters") for r in res3.reused)
    assert res3.metrics["frozen"]["num_clusters_used"] == 3


def test_config_checks():
    with pytest.raises(HRAlignError, match="--gap"):
        AnalyzeConfig(pairs="a.h5", out="o", encoder="x", gap=0)
    with pytest.raises(HRAlignError, match="--split"):
        AnalyzeConfig(pairs="a.h5", out="o", encoder="x", split="test")
    with pytest.raises(HRAlignError, match="--encoder SPEC"):
        AnalyzeConfig(pairs="a.h5", out="o")


# ---------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    import hralign

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=32), "bottleneck")
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    hralign.save_adapter(model, path)
    return path


def test_cli_runs_with_adapter(tiny_pairs, saved_adapter, tmp_path):
    out = tmp_path / "rep"
    code, stdout, stderr = run_cli("analyze", "--pairs", str(tiny_pairs), "--adapter", str(saved_adapter),
                                   "--out", str(out), "--k", "4", "--no-umap", "--batch-size", "32")
    assert code == 0, stderr
    assert "Embodiment mixing" in stdout and "frozen" in stdout and "adapted" in stdout
    assert f"report: {out / 'report.html'}" in stdout
    with h5py.File(out / "latents.h5", "r") as h:
        assert set(h["views"]) == {"frozen", "adapted"}
    # existing output directory without --overwrite: exit 2, one line
    code, stdout, stderr = run_cli("analyze", "--pairs", str(tiny_pairs), "--adapter", str(saved_adapter),
                                   "--out", str(out), "--k", "4", "--no-umap")
    assert code == 2 and stderr.strip().count("\n") == 0 and "pass --overwrite" in stderr


def test_cli_encoder_adapter_mismatch(tiny_pairs, saved_adapter, tmp_path):
    code, _, stderr = run_cli("analyze", "--pairs", str(tiny_pairs), "--adapter", str(saved_adapter),
                              "--encoder", "r3m-resnet34", "--out", str(tmp_path / "r"), "--no-umap")
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.strip().count("\n") == 0
    assert "does not match the base encoder" in stderr and "'r3m-resnet34' vs adapter base 'r3m-resnet18'" in stderr
    assert not (tmp_path / "r").exists()


def test_cli_k_larger_than_points(tiny_pairs, tmp_path):
    code, _, stderr = run_cli("analyze", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
                              "--out", str(tmp_path / "r"), "--k", "5000", "--no-umap")
    assert code == 2 and stderr.strip().count("\n") == 0
    assert "--k 5000 is larger than the number of latent actions (" in stderr
    assert not (tmp_path / "r").exists()


def test_cli_no_robot_clips(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "human_only.h5"
    with PairsWriter(path, tasks=["wave", "point"]) as w:
        for c in range(6):
            w.add_clip("human", rng.integers(0, 255, size=(6, 32, 32, 3), dtype=np.uint8), task=c % 2)
    out = tmp_path / "r"
    code, stdout, stderr = run_cli("analyze", "--pairs", str(path), "--encoder", "r3m-resnet18", "--image-size", "32",
                                   "--out", str(out), "--k", "3", "--no-umap", "--gap", "1")
    assert code == 0, stderr
    assert "no robot clips" in stdout
    summary = json.loads((out / "metrics.json").read_text())
    m = summary["views"]["frozen"]
    assert m["num_robot"] == 0 and m["num_human"] == 30
    assert m["embodiment_mixing"] is None and m["knn_cross"] is None
    assert any("no robot clips" in n for n in summary["notes"])


def test_cli_help_has_example():
    code, stdout, _ = run_cli("analyze", "--help")
    assert code == 0 and "Example:" in stdout and "--umap / --no-umap" in stdout


def test_umap_not_imported_at_module_level():
    # static check (a subprocess import costs ~20 s on 2 busy cores): umap may only be imported
    # inside a function body, never at module level of the analysis package or its CLI
    import ast
    import pathlib

    import hralign.analysis
    import hralign.cli.analyze

    files = list(pathlib.Path(hralign.analysis.__file__).parent.glob("*.py")) + [pathlib.Path(hralign.cli.analyze.__file__)]
    for f in files:
        for node in ast.parse(f.read_text()).body:  # module-level statements only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "umap" for n in names), f"{f.name} imports umap at module level"
    assert "import umap" in (pathlib.Path(hralign.analysis.__file__).parent / "embed.py").read_text()


def test_cli_latent_action_model(tiny_pairs, tmp_path):
    # a (barely trained) LAM directory from the LAM CLI; the analysis uses its latents and codes
    lam_dir = tmp_path / "lam"
    code, _, stderr = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(lam_dir), "--gap", "2",
                              "--steps", "2", "--idm", "conv", "--conv-channels", "8", "--patch-size", "8", "--dim", "32",
                              "--heads", "2", "--idm-depth", "1", "--fdm-depth", "1", "--code-dim", "8",
                              "--batch-size", "8", "--eval-pairs", "8")
    assert code == 0, stderr
    out = tmp_path / "r"
    code, stdout, stderr = run_cli("analyze", "--pairs", str(tiny_pairs), "--encoder", f"lam:{lam_dir}", "--out", str(out),
                                   "--k", "4", "--no-umap", "--gap", "1")
    assert code == 0, stderr
    assert "its own gap 2 is used (--gap 1 ignored)" in stdout
    views, _, _ = load_latents(out / "latents.h5")
    ls = views["frozen"].latents
    assert ls.gap == 2 and len(ls) == 12 * 2 * 6
    assert ls.codes is not None and ls.codes.shape[0] == len(ls)
    m = json.loads((out / "metrics.json").read_text())["views"]["frozen"]
    assert 0.0 <= m["paired_code_agreement"] <= 1.0 and m["num_codes_used"] >= 1


# ------------------------------------------------------------------------- --latents: bad rows
def test_cli_latents_with_nan_rows_names_file_dataset_and_row(tmp_path):
    from hralign.analysis.synth import write_synthetic_latents

    p = write_synthetic_latents(tmp_path / "l.h5", 300, dim=8, num_clusters=2, num_tasks=2)
    with h5py.File(p, "r+") as h:
        h["views/frozen/latents"][217, 3] = np.nan
        h["views/frozen/latents"][250, 0] = np.inf
    code, _, stderr = run_cli("analyze", "--latents", str(p), "--out", str(tmp_path / "r"), "--k", "2", "--no-umap")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"{p}: /views/frozen/latents: row 217 has non-finite values (nan)" in stderr and "`X`" not in stderr
    assert not (tmp_path / "r").exists()


def test_cli_latents_without_rows_says_so(tmp_path):
    from hralign.analysis.synth import write_synthetic_latents

    p = write_synthetic_latents(tmp_path / "l.h5", 10, dim=8, num_clusters=2, num_tasks=2)
    with h5py.File(p, "r+") as h:  # the same file with every row dropped
        for name in ["meta/domain", "meta/clip", "meta/pair", "meta/task", "meta/t", "views/frozen/latents"]:
            shape, dtype = (0, *h[name].shape[1:]), h[name].dtype
            del h[name]
            h.create_dataset(name, shape=shape, dtype=dtype)
    code, _, stderr = run_cli("analyze", "--latents", str(p), "--out", str(tmp_path / "r"), "--k", "2", "--no-umap")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert f"{p}: has no latent rows" in stderr and "--k <=" not in stderr


def test_check_finite_latents_reads_in_chunks(monkeypatch):
    import hralign.analysis.run as run_mod
    from hralign.analysis.rows import Rows

    x = np.zeros((10, 2), np.float32)
    run_mod.check_finite_latents(x, "ok")
    x[7, 1] = -np.inf
    monkeypatch.setattr(run_mod, "Rows", lambda data: Rows(data, chunk=3))  # row numbers count across chunks
    with pytest.raises(HRAlignError, match=r"^f.h5: /views/adapted/latents: row 7 has non-finite values \(-inf\)"):
        run_mod.check_finite_latents(x, "f.h5: /views/adapted/latents")
