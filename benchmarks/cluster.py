"""Clustering, neighbour-metric, UMAP and end-to-end speed of hralign.analysis at up to 1M latents,
measured against baselines in the same run.

Sub-commands (each prints a table; every configuration runs in its own child process so its wall
time and peak RSS are its own, and a baseline that exceeds ``--budget`` seconds is stopped and
reported as such):

  kmeans   (wall time and CPU seconds: on a shared machine CPU seconds are the load-robust figure)
           N x 512 Gaussian-mixture latents (k true components), k=64 and k=256, at each --sizes:
           hralign's clustering (FaissKMeans trained on a --train-points sample, every point
           assigned by faiss; methods ``hralign`` = the size rule ``analyze`` uses,
           ``hralign-faiss`` = faiss Lloyd with greedy k-means++ x3, ``hralign-minibatch`` =
           MiniBatchKMeans) vs scikit-learn KMeans (k-means++, n_init=1, 25 Lloyd iterations,
           tol=0: the reference baseline) and MiniBatchKMeans on all points (``minibatch``, batch
           4096); wall time, CPU time, peak RSS, inertia on all points, NMI vs truth; ``--seeds``.
  knn      cross-embodiment kNN metrics on an N-latent synthetic file: the default index (exact up to
           500k references per direction), IVF (nprobe nlist/16 and nlist/8) and exact search on the
           same queries: metric values, recall@k and wall time of each.
  analyze  ``hralign analyze --latents`` on an N-latent synthetic file (2 embodiments, 8 tasks,
           64 clusters; ``--one-embodiment`` for a human-only file): wall time by stage, peak RSS,
           report size, and (with --chromium) the headless-Chromium check of the report.
  umap     UMAPEmbedding on M points in a fresh process (imports + numba + kNN + fit + transform),
           with an empty and then a warm numba cache.

Usage:  python benchmarks/cluster.py kmeans [--sizes 100000 300000 1000000] [--ks 64 256] [--budget 300]
                                           [--threads 1] [--seeds 0 1 2] [--json FILE]
        python benchmarks/cluster.py knn --n 1000000 [--threads 1] [--json FILE]
        python benchmarks/cluster.py analyze --n 1000000 [--one-embodiment] [--chromium]
        python benchmarks/cluster.py umap [--n 50000]
Figures depend on the machine and on whatever else runs on it; the script prints both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mixture(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points (float32, built in chunks: no float64 copy at 1M x 512) from k isotropic Gaussians
    in d dims whose centres are ~3 noise std apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * (3.0 / np.sqrt(2 * d) * np.sqrt(d) / 4)
    y = rng.integers(0, k, size=n)
    x = np.empty((n, d), np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        x[a:b] = centres[y[a:b]] + rng.standard_normal((b - a, d), dtype=np.float32) * 0.25
    return x, y


KMEANS_CHILD = r"""
import json, sys, time, resource
sys.path.insert(0, {root!r})
import numpy as np
from benchmarks.cluster import mixture
from sklearn.metrics import normalized_mutual_info_score as nmi
x, y = mixture({n}, 512, {k})
rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from threadpoolctl import threadpool_limits
import faiss
if {threads}:  # same thread count for every method (faiss OpenMP + BLAS + sklearn's OpenMP)
    threadpool_limits({threads}); faiss.omp_set_num_threads({threads})
ru0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
if {method!r}.startswith("hralign"):
    from hralign.analysis import FaissKMeans
    how = {method!r}.partition("-")[2] or "auto"
    km = FaissKMeans(k={k}, seed={seed}, max_points=min({n}, {train}), threads={threads} or None, method=how).fit(x)
    labels, inertia, extra = km.labels_, km.inertia_, f"{{km.method_}} ({{how}}), trained on {{km.n_train_points_}}, all assigned"
elif {method!r} == "sklearn":
    from sklearn.cluster import KMeans
    km = KMeans(n_clusters={k}, n_init=1, max_iter=25, tol=0.0, init="k-means++", algorithm="lloyd", random_state={seed}).fit(x)
    labels, inertia, extra = km.labels_, float(km.inertia_), "25 Lloyd iterations"
else:
    from sklearn.cluster import MiniBatchKMeans
    km = MiniBatchKMeans(n_clusters={k}, batch_size=4096, n_init=1, random_state={seed}).fit(x)
    labels = km.predict(x)
    inertia, extra = float(((x - km.cluster_centers_[labels]) ** 2).sum()), f"{{km.n_iter_}} epochs"
sec = time.perf_counter() - t
ru1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
print("RESULT " + json.dumps(dict(sec=sec, cpu=cpu, inertia=float(inertia), nmi=float(nmi(y, labels)), rss_data=rss_data,
      rss_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, extra=extra)))
"""


def _child(code: str, budget: float, env: dict | None = None) -> tuple[dict | None, str]:
    """Run python code in a fresh process; (RESULT json or None, status)."""
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=budget,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return None, f"stopped at the {budget:.0f} s budget"
    if r.returncode != 0:
        return None, f"failed (rc {r.returncode}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}"
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    return (json.loads(line[-1][7:]), f"{time.perf_counter() - t:.0f} s process") if line else (None, "no result")


def bench_kmeans(sizes: list[int], ks: list[int], budget: float, train: int, methods: list[str], threads: int,
                 json_out: str | None = None, seeds: tuple[int, ...] = (0,)) -> None:
    print(f"k-means on N x 512 mixtures; cores visible {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; "
          f"budget {budget:.0f} s per run; hralign trains on {train} points; threads {threads or 'default'}")
    print(f"{'N':>8s} {'k':>4s} {'method':12s} {'time s':>8s} {'CPU s':>8s} {'CPU vs sk':>9s} {'peak RSS MB':>11s} "
          f"{'data MB':>8s} {'inertia':>12s} {'vs sklearn':>10s} {'NMI':>6s}  notes")
    for n, k, seed in ((n, k, seed) for n in sizes for k in ks for seed in seeds):
        res = {}
        for m in methods:
            res[m] = _child(KMEANS_CHILD.format(root=ROOT, n=n, k=k, method=m, train=train, threads=threads,
                                                seed=seed), budget)
        base = res.get("sklearn", (None, ""))[0]
        if json_out:
            _append_json(json_out, [dict(n=n, k=k, method=m, seed=seed, threads=threads, budget_s=budget, status=status,
                                         load=os.getloadavg()[0], **(r or {})) for m, (r, status) in res.items()])
        for m, (r, status) in res.items():
            if r is None:
                print(f"{n:8d} {k:4d} {m:12s} {'-':>8s} {'':>8s} {'':>9s} {'':>11s} {'':>8s} {'':>12s} {'':>10s} "
                      f"{'':>6s}  {status}", flush=True)
                continue
            sp = f"{base['cpu'] / r['cpu']:.2f}x" if base else "-"
            ri = f"{r['inertia'] / base['inertia'] - 1:+.2%}" if base else "-"
            print(f"{n:8d} {k:4d} {m:12s} {r['sec']:8.1f} {r['cpu']:8.1f} {sp:>9s} {r['rss_peak']:11.0f} "
                  f"{r['rss_data']:8.0f} {r['inertia']:12.5g} {ri:>10s} {r['nmi']:6.3f}  seed {seed}; {r['extra']}", flush=True)


def _append_json(path: str, rows: list[dict]) -> None:
    """Append result rows to a JSON list file (created if missing)."""
    p = Path(path)
    old = json.loads(p.read_text()) if p.exists() else []
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(old + rows, indent=1))


KNN_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from hralign.analysis import open_latents, Rows, stratified_sample
from hralign.analysis.neighbors import cross_knn
f = open_latents({path!r})
ls = f.views["frozen"].latents
rows = Rows(ls.latents)
sample = stratified_sample(ls.domain, ls.task, 50000, 0)
out = {{}}
for label, kw in {variants!r}:
    t = time.perf_counter()
    m = cross_knn(rows, ls.domain.astype(np.int64), ls.task, k=20, queries=sample, pair=ls.pair, t=ls.t, seed=0,
                  threads={threads}, **kw)
    m["sec"] = time.perf_counter() - t
    m["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out[label] = m
print("RESULT " + json.dumps(out))
"""

KNN_VARIANTS = [("default", {}), ("ivf", {"exact_max": 0}), ("ivf nprobe nlist/8", {"exact_max": 0, "nprobe": "nlist/8"}),
                ("exact", {"exact_max": 10**12})]


def bench_knn(n: int, budget: float, workdir: Path, threads: int, variants: list[str], json_out: str | None) -> None:
    import math

    from hralign.analysis.synth import write_synthetic_latents

    path = workdir / f"synth_{n}.h5"
    if not path.exists():
        write_synthetic_latents(path, n, dim=512, num_clusters=64, num_tasks=8, seed=0)
    nlist = min(1024, max(16, round(math.sqrt(n // 2))))
    chosen = []
    for label, kw in KNN_VARIANTS:
        if label in variants:
            kw = dict(kw)
            if kw.get("nprobe") == "nlist/8":  # the default before it was measured (now nlist/16)
                kw["nprobe"] = max(8, nlist // 8)
            chosen.append((label, kw))
    r, status = _child(KNN_CHILD.format(root=ROOT, path=str(path), variants=chosen, threads=threads), budget)
    print(f"cross-embodiment neighbour metrics, {n} x 512 latents (half human, half robot: {n // 2} references per "
          f"direction), k=20, queries: a stratified 50k sample, at most 10k per direction; threads {threads} ({status})")
    if r is None:
        return
    if json_out:
        _append_json(json_out, [dict(n=n, variant=v, threads=threads, load=os.getloadavg()[0], **m) for v, m in r.items()])
    keys = ("knn_robot_to_human", "knn_human_to_robot", "knn_cross", "retrieval_robot_to_human",
            "knn_robot_to_human_recall", "knn_human_to_robot_recall", "knn_index", "sec", "peak_rss_mb")
    print(f"{'':28s}" + "".join(f"{v:>40s}" for v in r))
    for key in keys:
        cells = [r[v][key] for v in r]
        print(f"{key:28s}" + "".join(f"{(f'{c:.4f}' if isinstance(c, float) else str(c)):>40s}" for c in cells))


def chromium_check(report: Path) -> str:
    """Open the report in headless Chromium: 'ok (N points, density drawn)' or what went wrong."""
    chromium = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
    if chromium is None:
        return "skipped: no Chromium"
    with tempfile.TemporaryDirectory() as prof:
        r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", f"--user-data-dir={prof}",
                            "--enable-logging=stderr", "--v=0", "--dump-dom", report.resolve().as_uri()],
                           capture_output=True, text=True, timeout=300)
    drawn = re.search(r'data-points-drawn="(\d+)"', r.stdout)
    dens = re.search(r'data-density-drawn="([^"]+)"', r.stdout)
    console = [c for c in re.findall(r'CONSOLE[^\]]*\] "(.*?)", source:', r.stderr) if not c.startswith("hralign report:")]
    if r.returncode != 0 or not drawn or not dens or console:
        return f"FAILED (rc {r.returncode}, drawn {drawn and drawn.group(1)}, density {dens and dens.group(1)}, console {console[:3]})"
    return f"ok ({drawn.group(1)} points drawn, density layer drawn, no console errors)"


def bench_analyze(n: int, one_embodiment: bool, budget: float, workdir: Path, chromium: bool, extra: list[str]) -> None:
    from hralign.analysis.synth import write_synthetic_latents

    path = workdir / f"synth_{n}{'_human' if one_embodiment else ''}.h5"
    t = time.perf_counter()
    if not path.exists():
        write_synthetic_latents(path, n, dim=512, num_clusters=64, num_tasks=8, seed=0,
                                embodiments=1 if one_embodiment else 2)
    gen = time.perf_counter() - t
    out = workdir / f"report_{n}{'_human' if one_embodiment else ''}"
    cmd = [sys.executable, "-m", "hralign.cli.main", "analyze", "--latents", str(path), "--out", str(out),
           "--overwrite", "--k", "64", *extra]
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env={**os.environ, "PYTHONPATH": ROOT})
    except subprocess.TimeoutExpired:
        print(f"analyze {n}: stopped at the {budget:.0f} s budget")
        return
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"hralign analyze --latents ({n} x 512{', one embodiment' if one_embodiment else ''}; file written in "
          f"{gen:.0f} s, {path.stat().st_size / 2**20:.0f} MB): exit {r.returncode}, process wall {wall:.0f} s, "
          f"peak RSS {rss:.0f} MB")
    if r.returncode != 0:
        print(r.stderr[-1500:])
        return
    print("\n".join(x for x in r.stdout.splitlines() if x.startswith(("note:", "time:", "Cross", "kNN", "  recall",
                                                                       "Embodiment", "NMI clusters", "Paired"))))
    summary = json.loads((out / "metrics.json").read_text())
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings"].items()))
    print(f"report.html {(out / 'report.html').stat().st_size / 2**20:.2f} MB; latents.h5 "
          f"{(out / 'latents.h5').stat().st_size / 2**20:.0f} MB; in-process peak RSS {summary['peak_rss_mb']:.0f} MB")
    print("peak RSS after each stage (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                          summary.get("peak_rss_after_stage_mb", {}).items()))
    if chromium:
        print(f"headless Chromium: {chromium_check(out / 'report.html')}")


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


def bench_umap(n: int, d: int, k: int) -> None:
    code = UMAP_CHILD.format(root=ROOT, n=n, d=d, k=k)
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
                  f"fit on 15k + transform of the rest (kNN, compile included) {float(fit):.1f} s; "
                  f"silhouette of true labels in 2-D {sil}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kmeans")
    k.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    k.add_argument("--ks", type=int, nargs="+", default=[64, 256])
    k.add_argument("--budget", type=float, default=300)
    k.add_argument("--train-points", type=int, default=50_000)
    k.add_argument("--methods", nargs="+", default=["hralign", "sklearn", "minibatch"],
                   help="hralign (method auto), hralign-faiss, hralign-minibatch, sklearn, minibatch")
    k.add_argument("--json", default=None, help="append the rows to this JSON file")
    k.add_argument("--seeds", type=int, nargs="+", default=[0], help="clustering seeds (the data seed stays 0)")
    k.add_argument("--threads", type=int, default=0, help="threads for every method (0: each library's default)")
    q = sub.add_parser("knn")
    q.add_argument("--n", type=int, default=1_000_000)
    q.add_argument("--budget", type=float, default=1200)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--variants", nargs="+", default=[v for v, _ in KNN_VARIANTS])
    q.add_argument("--json", default=None, help="append the rows to this JSON file")
    a = sub.add_parser("analyze")
    a.add_argument("--n", type=int, default=1_000_000)
    a.add_argument("--one-embodiment", action="store_true")
    a.add_argument("--chromium", action="store_true")
    a.add_argument("--budget", type=float, default=1800)
    a.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more analyze options")
    u = sub.add_parser("umap")
    u.add_argument("--n", type=int, default=50_000)
    for p in (q, a):
        p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "hralign_bench_cluster"))
    args = ap.parse_args()
    if args.cmd == "kmeans":
        bench_kmeans(args.sizes, args.ks, args.budget, args.train_points, args.methods, args.threads, args.json, tuple(args.seeds))
    elif args.cmd == "knn":
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        bench_knn(args.n, args.budget, Path(args.workdir), args.threads, args.variants, args.json)
    elif args.cmd == "analyze":
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        bench_analyze(args.n, args.one_embodiment, args.budget, Path(args.workdir), args.chromium, args.extra)
    else:
        bench_umap(args.n, 512, 64)


if __name__ == "__main__":
    main()
