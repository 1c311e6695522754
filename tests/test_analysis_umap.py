"""UMAP on FAISS neighbours (slow: importing umap and numba's first compile take about a minute)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from hralign.analysis import UMAPEmbedding

pytestmark = pytest.mark.slow


def test_umap_seeded_and_separates_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 4
    y = np.repeat(np.arange(3), 100)
    x = (centres[y] + rng.normal(size=(300, 32))).astype(np.float32)
    a = UMAPEmbedding(n_neighbors=10, seed=3).fit_transform(x)
    b = UMAPEmbedding(n_neighbors=10, seed=3).fit_transform(x)
    assert a.shape == (300, 2)
    np.testing.assert_allclose(a, b)  # seeded: repeatable
    assert silhouette_score(a, y) > 0.5


def test_pipeline_with_umap_caches_map(tiny_pairs, tmp_path):
    import torch
    import torch.nn.functional as F

    from hralign.analysis import AnalyzeConfig, load_latents, run_analysis

    class Pool(torch.nn.Module):
        spec = {"name": "pool"}

        def forward(self, images):
            return F.adaptive_avg_pool2d(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255, 4).flatten(1)

    cfg = AnalyzeConfig(pairs=str(tiny_pairs), out=str(tmp_path / "r"), encoder="pool", k=4, umap=True, progress=False)
    res = run_analysis(cfg, Pool())
    assert (tmp_path / "r" / "umap_by_task.png").is_file()
    views, _, _ = load_latents(tmp_path / "r" / "latents.h5")
    assert views["frozen"].map_method == "umap"
    cfg2 = AnalyzeConfig(**{**cfg.__dict__, "overwrite": True})
    res2 = run_analysis(cfg2, Pool())
    assert "map[frozen]" in res2.reused
    np.testing.assert_array_equal(load_latents(tmp_path / "r" / "latents.h5")[0]["frozen"].map2d, views["frozen"].map2d)
    assert res2.metrics == res.metrics


def test_umap_fit_on_sample_and_transform_the_rest():
    # fit_size 200 of 600 points: the other 400 are placed by umap's transform (FAISS neighbours);
    # same seed -> same map, and blobs stay separated for transformed points too
    from hralign.analysis import Rows
    from hralign.analysis.embed import embed_rows

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 32)) * 4
    y = np.repeat(np.arange(3), 200)
    x = (centres[y] + rng.normal(size=(600, 32))).astype(np.float32)
    sample = np.arange(0, 600, 2)
    a = embed_rows(UMAPEmbedding(n_neighbors=10, seed=0, fit_size=200), Rows(x, chunk=128), sample)
    b = embed_rows(UMAPEmbedding(n_neighbors=10, seed=0, fit_size=200), Rows(x, chunk=128), sample)
    assert a.shape == (600, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    rest = np.setdiff1d(np.arange(600), sample)
    assert silhouette_score(a[rest], y[rest]) > 0.5
