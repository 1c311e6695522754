"""Clustering and UMAP speed of hralign.analysis, measured against baselines in the same run.

1. FAISS k-means (hralign.analysis.FaissKMeans, all points, k-means++ and random init) vs
   scikit-learn KMeans (k-means++, n_init=1, same 25 Lloyd iterations) on N x D synthetic latents
   from a Gaussian mixture with known labels, k=64: wall time, time ratio (goal >= 4x faster),
   inertia and NMI against the true labels.
2. UMAP (hralign.analysis.UMAPEmbedding: FAISS kNN + umap-learn, seeded) on M points: wall time of
   the first call in a fresh Python process, imports and numba compile included (goal <= 60 s on
   2 cores), once with an empty numba cache (true first run) and once with the cache it left.

Usage:  python benchmarks/cluster.py [--n 100000] [--dim 512] [--k 64] [--umap-n 50000] [--skip-umap]
Figures depend on the machine and on whatever else runs on it; the script prints both sides.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def mixture(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points from k isotropic Gaussians in d dims whose centres are ~3 noise std apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * (3.0 / np.sqrt(2 * d) * np.sqrt(d) / 4)
    y = rng.integers(0, k, size=n)
    x = centres[y] + rng.normal(size=(n, d)).astype(np.float32) * 0.25
    return np.ascontiguousarray(x, dtype=np.float32), y


UMAP_CHILD = r"""
import sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {root!r})
from benchmarks.cluster import mixture
from hralign.analysis import UMAPEmbedding
x, y = mixture({n}, {d}, {k}, seed=1)
t1 = time.perf_counter()
z = UMAPEmbedding(n_neighbors=15, seed=0).fit_transform(x)
t2 = time.perf_counter()
from sklearn.metrics import silhouette_score
s = silhouette_score(z, y, sample_size=5000, random_state=0)
print(f"RESULT {{t2 - t1:.2f}} {{t2 - t0:.2f}} {{s:.3f}}")
"""


def bench_kmeans(n: int, d: int, k: int, niter: int) -> None:
    import faiss
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from hralign.analysis import FaissKMeans

    x, y = mixture(n, d, k)
    print(f"k-means: {n} x {d} float32, k={k}, {niter} iterations, 1 run; threads: faiss {faiss.omp_get_max_threads()}, "
          f"cores visible {os.cpu_count()}")
    rows = []
    for label, make in (
        ("faiss k-means++ (hralign default)", lambda: FaissKMeans(k=k, niter=niter, seed=0, init="k-means++")),
        ("faiss random init", lambda: FaissKMeans(k=k, niter=niter, seed=0, init="random")),
    ):
        t = time.perf_counter()
        km = make().fit(x)
        rows.append((label, time.perf_counter() - t, km.inertia_, nmi(y, km.labels_), km.n_train_points_))
    t = time.perf_counter()
    sk = KMeans(n_clusters=k, n_init=1, max_iter=niter, tol=0.0, init="k-means++", algorithm="lloyd", random_state=0).fit(x)
    rows.append(("scikit-learn KMeans k-means++", time.perf_counter() - t, float(sk.inertia_), nmi(y, sk.labels_), n))
    base = rows[-1][1]
    print(f"{'method':36s} {'time s':>8s} {'speed-up':>9s} {'inertia':>14s} {'NMI':>6s} {'trained on':>10s}")
    for label, sec, inertia, score, used in rows:
        print(f"{label:36s} {sec:8.2f} {base / sec:8.1f}x {inertia:14.4g} {score:6.3f} {used:10d}")


def bench_umap(n: int, d: int, k: int) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = UMAP_CHILD.format(root=root, n=n, d=d, k=k)
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold numba cache (first ever run)", "warm numba cache (later runs)"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t
            if r.returncode != 0:
                print(f"UMAP {label}: failed\n{r.stderr[-2000:]}")
                return
            fit, inproc, sil = r.stdout.split("RESULT")[-1].split()
            print(f"UMAP {n} x {d} ({label}): process wall {wall:.1f} s; in-process from start {float(inproc):.1f} s; "
                  f"fit (kNN + UMAP, compile included) {float(fit):.1f} s; silhouette of true labels in 2-D {sil}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--niter", type=int, default=25)
    ap.add_argument("--umap-n", type=int, default=50_000)
    ap.add_argument("--skip-umap", action="store_true")
    ap.add_argument("--skip-kmeans", action="store_true")
    a = ap.parse_args()
    if not a.skip_kmeans:
        bench_kmeans(a.n, a.dim, a.k, a.niter)
    if not a.skip_umap:
        bench_umap(a.umap_n, a.dim, a.k)


if __name__ == "__main__":
    main()
