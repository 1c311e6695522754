"""The analysis pipeline behind ``hralign analyze``: latents -> clusters -> 2-D map -> metrics -> report.

With an adapter there are two views of the same latents: "frozen" (both embodiments through the
frozen encoder) and "adapted" (human through the frozen encoder, robot through the adapted one:
HR-Align adapts the robot branch only). Every figure and metric is computed for both.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hralign.analysis.cluster import FaissKMeans, choose_method
from hralign.analysis.config import AnalyzeConfig
from hralign.analysis.consistency import consistency_metrics, paired_agreement
from hralign.analysis.embed import PCAEmbedding, UMAPEmbedding, embed_rows
from hralign.analysis.figures import FIGURE_POINTS, gallery_figure, map_figure
from hralign.analysis.latents import (DOMAINS, LatentSet, LatentWhitener, build_latent_set, feature_differences,
                                      select_clips)
from hralign.analysis.report import LAM_ONLY, METRIC_ROWS, _fmt, scatter_payload, write_report
from hralign.analysis.rows import Rows
from hralign.analysis.sample import stratified_sample
from hralign.analysis.store import LatentsFile, View, cache_key, open_latents, save_latents
from hralign.atomic import atomic_dir, write_text_atomic
from hralign.device import DeviceConfig, Placement, resolve
from hralign.encoders.clips import encode_clips, shard_clips
from hralign.errors import HRAlignError
from hralign.lam.encoder import find_codebook, latents_to_codes
from hralign.pairs import PairsFile
from hralign.pairs.split import DEFAULT_VAL_FRACTION, split_pairs
from hralign.shard import Shard, current_shard, gather_parts


@dataclass
class AnalysisResult:
    """What a run produced: the output directory, metrics per view, notes and stage timings."""

    out: Path
    metrics: dict[str, dict]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    is_main: bool = True  # False on the other processes of a sharded encoder pass (they stop after it)


def check_finite_latents(latents, where: str) -> None:
    """Refuse NaN/inf latents before clustering, naming ``where`` and the first bad row (read in chunks).

    FAISS and scikit-learn would refuse them too, but naming only their own argument ``X``.
    """
    for a, chunk in Rows(latents).chunks():
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            r = int(np.argmax(bad))
            raise HRAlignError(f"{where}: row {a + r} has non-finite values ({chunk[r][~np.isfinite(chunk[r])][0]}); "
                               "expected finite latents (re-encode, or drop those rows)")


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to write into an existing non-empty directory unless ``overwrite``."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise HRAlignError(f"--out {p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise HRAlignError(f"--out {p}: directory exists; pass --overwrite to replace it")


def select_pairs(pairs: PairsFile, split: str, seed: int) -> np.ndarray:
    """Pair indices of ``split`` ("all", "train", "val"; file /split wins, else the seeded split training uses: DEFAULT_VAL_FRACTION by pair)."""
    if split == "all" or pairs.num_pairs == 0:
        return np.arange(pairs.num_pairs, dtype=np.int64)
    train, val = split_pairs(pairs, val_fraction=DEFAULT_VAL_FRACTION, by="pair", seed=seed)
    chosen = val if split == "val" else train
    if chosen.size == 0:
        raise HRAlignError(f"--split {split}: {pairs.path} has no {split} pairs; use --split all")
    return chosen


def _file_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _spec_of(model) -> dict:
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict):
        return spec
    return {"class": type(model).__name__, "id": id(model)}  # never cached across runs


def _encode(model, pairs: PairsFile, domain: str, clips, gap: int, config: AnalyzeConfig, placement: Placement,
            desc: str, shard: Shard = Shard()) -> list[np.ndarray] | None:
    """Encoder pass: every frame (``gap`` 0) or frame pair of ``clips`` -> float32 arrays per clip.

    Under a launcher (``shard.world`` > 1) each process encodes a contiguous run of whole batch
    groups (:func:`shard_clips`: the batches one process would run, so the same floats) and the
    main process gathers them in clip order (:func:`gather_parts`); the others get None.
    """
    model.eval()
    clips = np.asarray(clips, np.int64)
    lo, hi = shard_clips(pairs, domain, clips, shard, gap, config.batch_size) if shard.world > 1 else (0, len(clips))
    zs = [z.numpy() for z in encode_clips(model, pairs, domain, clips[lo:hi], gap=gap, batch_size=config.batch_size,
                                          placement=placement, progress=config.progress, desc=desc)]
    if shard.world == 1:
        return zs
    full = [z for z in zs if len(z)]
    arrays = {"z": np.concatenate(full) if full else np.zeros((0, 0), np.float32),
              "n": np.array([len(z) for z in zs], np.int64)}
    out = Path(config.out)
    merged = gather_parts(arrays, out.parent / f".{out.name}.parts-{desc.replace(' ', '-')}", shard)
    if merged is None:
        return None
    z, n = merged["z"], merged["n"]
    tail = z.shape[1:] if z.shape[0] else (zs[0].shape[1:] if zs else (0,))
    return [z[a:b] if b > a else np.zeros((0, *tail), np.float32)
            for a, b in zip(np.r_[0, np.cumsum(n)[:-1]], np.cumsum(n))]


def is_latent_action_model(model) -> bool:
    """A ``lam:`` encoder (or an adapted one): its input is a frame pair and its output a latent action."""
    return bool(getattr(model, "frame_pairs", False) or getattr(getattr(model, "base", None), "frame_pairs", False))


def lam_gap(model) -> int:
    cfg = getattr(model, "lam_config", None) or getattr(getattr(model, "base", None), "lam_config", None)
    return int(cfg.gap)


def extract_lam_views(pairs: PairsFile, frozen, adapted, selection, gap: int, config: AnalyzeConfig,
                      placement: Placement, shard: Shard = Shard()) -> dict[str, LatentSet] | None:
    """Latent action model: its continuous latent of (x_t, x_{t+gap}) and its code (nearest codebook
    entries of the frozen LAM, also for the adapted view)."""
    codebook = find_codebook(frozen)
    lat: dict[str, dict[str, list[np.ndarray]]] = {"frozen": {}, "adapted": {}}
    for d in DOMAINS:
        if d not in selection:
            continue
        clips = selection[d][0]
        lat["frozen"][d] = _encode(frozen, pairs, d, clips, gap, config, placement, f"frozen {d}", shard)
        if adapted is not None:
            lat["adapted"][d] = (lat["frozen"][d] if d == "human" else
                                 _encode(adapted, pairs, d, clips, gap, config, placement, f"adapted {d}", shard))
    if not shard.is_main:
        return None
    out = {}
    for view, per_domain in lat.items():
        if not per_domain:
            continue
        ts = {d: [np.arange(len(z), dtype=np.int64) for z in zs] for d, zs in per_domain.items()}
        codes = {d: [latents_to_codes(torch.from_numpy(z).to(codebook.device), codebook).cpu().numpy()
                     if len(z) else np.zeros((0, 1), np.int64) for z in zs] for d, zs in per_domain.items()}
        out[view] = build_latent_set(pairs, selection, per_domain, ts, gap, codes=codes)
    return out


def extract_views(pairs: PairsFile, frozen, adapted, selection, config: AnalyzeConfig,
                  placement: Placement, shard: Shard = Shard()) -> dict[str, LatentSet] | None:
    """Latent actions of the frozen view (and the adapted one): human features are computed once."""
    feats: dict[str, dict[str, list[np.ndarray]]] = {"frozen": {}, "adapted": {}}
    for d in DOMAINS:
        if d not in selection:
            continue
        clips = selection[d][0]
        feats["frozen"][d] = _encode(frozen, pairs, d, clips, 0, config, placement, f"frozen {d}", shard)
        if adapted is not None:
            feats["adapted"][d] = (feats["frozen"][d] if d == "human" else
                                   _encode(adapted, pairs, d, clips, 0, config, placement, f"adapted {d}", shard))
    if not shard.is_main:
        return None
    out = {}
    for view, per_domain in feats.items():
        if not per_domain:
            continue
        zs, ts = {}, {}
        for d, f in per_domain.items():
            zs[d], ts[d] = feature_differences(f, config.gap)
        out[view] = build_latent_set(pairs, selection, zs, ts, config.gap)
    return out


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def _domain_notes(domain: np.ndarray, source: str) -> list[str]:
    notes = []
    if not (domain == 1).any():
        notes.append(f"{source} has no robot latents: analysis of the human embodiment only "
                     "(no embodiment mixing, paired agreement or cross-embodiment kNN).")
    if not (domain == 0).any():
        notes.append(f"{source} has no human latents: analysis of the robot embodiment only.")
    return notes


def _encode_pairs(config: AnalyzeConfig, frozen, adapted, notes: list[str], cached: dict[str, View], reused: list[str],
                  shard: Shard = Shard()):
    """Stage 1 with --pairs: (pairs file, latent sets per view (None on a non-main shard), cache keys, gap, lam?,
    pair indices)."""
    pairs = PairsFile(config.pairs)
    placement = resolve(DeviceConfig(config.device, config.precision))
    frozen = frozen.to(placement.device)
    adapted = adapted.to(placement.device) if adapted is not None else None
    domains = pairs.domains
    if not domains:
        raise HRAlignError(f"{pairs.path}: has no clips to analyse")
    if "robot" not in domains:
        notes.append(f"{pairs.path.name} has no robot clips: analysis of the human embodiment only "
                     "(no embodiment mixing, paired agreement or cross-embodiment kNN).")
    if "human" not in domains:
        notes.append(f"{pairs.path.name} has no human clips: analysis of the robot embodiment only.")
    if pairs.num_pairs == 0:
        notes.append("the file has no pairs: every clip is analysed, unpaired.")
    if adapted is not None and "robot" not in domains:
        notes.append("--adapter given but there are no robot clips: the adapted view equals the frozen one.")
    lam = is_latent_action_model(frozen)
    gap = lam_gap(frozen) if lam else config.gap
    if lam and gap != config.gap:
        notes.append(f"latent action model: its own gap {gap} is used (--gap {config.gap} ignored); latents are "
                     "the LAM's continuous latents, codes its nearest codebook entries.")
    pair_idx = select_pairs(pairs, config.split, config.seed)
    if config.split == "all" and adapted is not None and pairs.split is not None:
        notes.append("split=all includes the pairs the adapter was trained on; use --split val for held-out pairs only.")
    selection = select_clips(pairs, pair_idx)
    base_key = dict(pairs=_file_fingerprint(pairs.path), gap=gap, split=config.split, seed=config.seed)
    lat_keys = {"frozen": cache_key(**base_key, enc=_spec_of(frozen))}
    if adapted is not None:
        lat_keys["adapted"] = cache_key(**base_key, enc=_spec_of(frozen), ada=_spec_of(adapted))
    if all(v in cached and cached[v].keys.get("latents_key") == k for v, k in lat_keys.items()):
        latsets = {v: cached[v].latents for v in lat_keys}
        reused.append("latents")
    else:
        latsets = (extract_lam_views(pairs, frozen, adapted, selection, gap, config, placement, shard) if lam
                   else extract_views(pairs, frozen, adapted, selection, config, placement, shard))
    return pairs, latsets, lat_keys, gap, lam, pair_idx, frozen


@dataclass
class _Input:
    """What stage 1 gives the rest: the latent sets per view and where they came from."""

    latsets: dict[str, LatentSet]
    lat_keys: dict[str, str]
    gap: int
    tasks: list[str]
    pairs: PairsFile | None = None  # --pairs: frames for galleries and thumbnails
    source: LatentsFile | None = None  # --latents: the open latents.h5
    frozen: torch.nn.Module | None = None
    lam: bool = False
    pair_idx: np.ndarray | None = None

    def close(self) -> None:
        for f in (self.pairs, self.source):
            if f is not None:
                f.close()


@dataclass
class _ViewResult:
    """One view's clusters, 2-D map and metrics, with the squared distance of each latent to its centroid."""

    view: View
    metrics: dict
    dists: np.ndarray | None


def _open_cache(out: Path, config: AnalyzeConfig, log: Callable[[str], None]):
    """The views of a previous run's latents.h5 in ``out`` (reachable only with --overwrite): (file, views).

    Not when ``out/latents.h5`` is the very ``--latents`` input; an unreadable one is ignored, with a note.
    """
    if not (out / "latents.h5").is_file() or (config.latents and Path(config.latents).resolve() == (out / "latents.h5").resolve()):
        return None, {}
    try:
        cache_file = open_latents(out / "latents.h5")
        return cache_file, cache_file.views
    except HRAlignError as e:
        log(f"note: ignoring unreadable cache {out / 'latents.h5'} ({e})")
        return None, {}


def _read_stored_latents(config: AnalyzeConfig, cached: dict[str, View], notes: list[str], reused: list[str]) -> _Input:
    """Stage 1 with --latents: the stored latent sets (read lazily, in chunks), no encoder."""
    source = open_latents(config.latents)
    latsets = {v: view.latents for v, view in source.views.items()}
    lat_keys = {v: cache_key(latents=_file_fingerprint(source.path), view=v) for v in latsets}
    if cached and all(v in cached and cached[v].keys.get("latents_key") == k for v, k in lat_keys.items()):
        reused.append("latents")
    notes += _domain_notes(next(iter(latsets.values())).domain, source.path.name)
    return _Input(latsets, lat_keys, source.gap, source.tasks, source=source)


def _check_latents(config: AnalyzeConfig, latsets: dict[str, LatentSet]) -> int:
    """Refuse non-finite or no latents, and a --k above their number; returns the number of latents."""
    n = len(next(iter(latsets.values())))
    for vname, ls in latsets.items():
        where = f"{config.latents}: /views/{vname}/latents" if config.latents else f"{vname} latents of {config.pairs}"
        check_finite_latents(ls.latents, where)
    if n == 0:
        raise HRAlignError(f"{config.latents}: has no latent rows (/views/*/latents is empty); nothing to cluster, "
                           "analyse a latents.h5 with rows" if config.latents else
                           f"{config.pairs}: gave no latent actions (every clip shorter than --gap + 1 frames?)")
    if config.k > n:
        raise HRAlignError(f"--k {config.k} is larger than the number of latent actions ({n}); use --k <= {n}")
    return n


def _draw_sample(config: AnalyzeConfig, first: LatentSet, n: int, notes: list[str]) -> np.ndarray:
    """The stratified sample (by embodiment and task) that k-means, the map and kNN fit on, shared by every view."""
    sample = stratified_sample(first.domain, first.task, config.max_points, config.seed)
    if config.k > len(sample):
        raise HRAlignError(f"--k {config.k} is larger than --max-points {config.max_points} (the k-means training "
                           f"sample); use --max-points >= {config.k}")
    if len(sample) < n:
        notes.append(f"{n} latents: k-means trained, the 2-D map fitted and kNN queried on a stratified sample of "
                     f"{len(sample)} (--max-points); every latent is clustered, mapped and counted.")
    return sample


def lam_consistency(ls: LatentSet, sample: np.ndarray, seed: int = 0) -> dict[str, float | None]:
    """The LAM measures of `hralign lam eval` that hold without frame alignment (hralign.lam.measures),
    on the sampled rows: kNN of task and motion phase across embodiments on disjoint episodes, and
    NMI of the codes against discretised robot actions."""
    from hralign.lam.measures import code_nmi, discretize_actions, halves_of_rows, knn_consistency

    out: dict[str, float | None] = {}
    s = np.asarray(sample, np.int64)
    dom, clip, t = ls.domain[s].astype(np.int64), ls.clip[s], ls.t[s]
    # phase: which of 4 time bins of its clip's analysed frames (t = 0 .. last t) a row falls in
    unit = ls.domain.astype(np.int64) * (int(ls.clip.max(initial=0)) + 1) + ls.clip
    last = np.zeros(int(unit.max(initial=0)) + 1, np.int64)
    np.maximum.at(last, unit, ls.t.astype(np.int64))
    phase = np.minimum(t * 4 // (last[unit[s]] + 1), 3)
    knn = knn_consistency(np.asarray(ls.latents[s], np.float32), dom, ls.task[s], phase,
                          halves_of_rows(ls.pair[s], dom, clip, seed), seed=seed)
    for key, name in (("human->robot", "human_to_robot"), ("robot->human", "robot_to_human")):
        for what in ("task", "phase"):
            v = knn.get(key, {})
            out[f"lam_knn_{what}_{name}"] = v.get(what)
            if name == "human_to_robot":
                out[f"lam_knn_{what}_{name}_shuffled"] = v.get(f"{what}_shuffled")
    if ls.actions is not None and ls.codes is not None:
        r = (dom == 1) & np.isfinite(ls.actions[s]).all(1)
        if r.sum() >= 4:
            res = code_nmi(ls.codes[s][r].reshape(int(r.sum()), -1), discretize_actions(ls.actions[s][r]),
                           int(ls.codes.max()) + 1, seed=seed)
            out["lam_code_nmi_actions"], out["lam_code_nmi_actions_shuffled"] = res["nmi"], res["nmi_shuffled"]
    return out


def _analyse_view(vname: str, ls: LatentSet, lat_key: str, sample: np.ndarray, km_method: str, config: AnalyzeConfig,
                  old: View | None, with_frames: bool, notes: list[str], reused: list[str],
                  timings: dict[str, float], rss: dict[str, float]) -> _ViewResult:
    """Stages 2-4 for one view: its space (whitened or not), clusters, 2-D map and metrics.

    Clusters and map come from ``old`` (the previous run's view) when their cache keys match;
    ``timings`` and ``rss`` get this view's time and peak memory per stage.
    """
    n = len(ls)
    rows = Rows(ls.latents)
    space = rows
    if config.whiten:
        wh = LatentWhitener(seed=config.seed).fit(rows.take(sample))
        space = Rows(ls.latents, transform=wh.transform)
    ckey = cache_key(lat=lat_key, k=config.k, sph=config.spherical, nredo=config.nredo,
                     niter=config.niter, whiten=config.whiten, max_points=config.max_points, method=km_method, v=3)
    mkey = cache_key(lat=lat_key, whiten=config.whiten, umap=config.umap, nn=config.n_neighbors,
                     max_points=config.max_points, v=2)
    dists = None
    t0 = time.perf_counter()
    if old is not None and old.keys.get("cluster_key") == ckey:
        clusters, centroids = old.clusters, old.centroids
        reused.append(f"clusters[{vname}]")
    else:
        km = FaissKMeans(k=config.k, spherical=config.spherical, nredo=config.nredo, niter=config.niter,
                         seed=config.seed, method=km_method).fit(space.take(sample))
        clusters, dists = km.assign(space)
        centroids = km.cluster_centers_
    timings["cluster_s"] += time.perf_counter() - t0
    rss[f"clusters[{vname}]"] = _peak_rss_mb()
    t0 = time.perf_counter()
    if old is not None and old.keys.get("map_key") == mkey and old.map2d is not None:
        map2d, method = old.map2d, old.map_method
        reused.append(f"map[{vname}]")
    else:
        emb = UMAPEmbedding(n_neighbors=config.n_neighbors, seed=config.seed) if config.umap else PCAEmbedding(config.seed)
        if config.umap and n < 4:
            emb = PCAEmbedding(config.seed)
            notes.append(f"only {n} latents: PCA map instead of UMAP")
        map2d, method = embed_rows(emb, space, sample), emb.method
    timings["map_s"] += time.perf_counter() - t0
    rss[f"map[{vname}]"] = _peak_rss_mb()
    view = View(latents=ls, clusters=clusters, centroids=centroids, map2d=map2d, map_method=method,
                keys={"latents_key": lat_key, "cluster_key": ckey, "map_key": mkey})
    t0 = time.perf_counter()
    metrics = consistency_metrics(space, clusters, ls.domain.astype(np.int64), ls.task, ls.pair, ls.t,
                                  actions=ls.actions, clip=ls.clip, knn_k=config.knn_k, seed=config.seed, sample=sample)
    if ls.codes is not None:  # LAM: do matched human/robot frames get the same discrete code?
        code_id = np.unique(ls.codes.reshape(len(ls), -1), axis=0, return_inverse=True)[1].reshape(-1)
        metrics["paired_code_agreement"] = paired_agreement(code_id, ls.domain, ls.pair, ls.t)
        metrics["num_codes_used"] = float(np.unique(code_id).size)
        metrics.update(lam_consistency(ls, sample, config.seed))
    if dists is None and with_frames:  # cached clusters: distances for the gallery
        c = np.asarray(centroids, np.float32)
        dists = np.concatenate([((ch - c[clusters[a:a + len(ch)]]) ** 2).sum(1) for a, ch in space.chunks()])
    timings["metrics_s"] += time.perf_counter() - t0
    rss[f"metrics[{vname}]"] = _peak_rss_mb()
    return _ViewResult(view, metrics, dists)


def _report_info(config: AnalyzeConfig, inp: _Input, first: LatentSet, n: int, sample: np.ndarray, km_method: str,
                 method: str, knn_index, extra_info: dict | None) -> dict[str, str]:
    """The report's "what was run" table: input, latent definition, sample, clustering, map, kNN index."""
    if inp.pairs is not None:
        info = {
            "pairs": str(inp.pairs.path), "encoder": str(getattr(inp.frozen, "name", type(inp.frozen).__name__)),
            "adapter": config.adapter or "none", "split": f"{config.split} ({len(inp.pair_idx)} pairs)",
            "latent": (f"LAM continuous latent of (x_t, x_t+{inp.gap})" if inp.lam else f"z_t = f(x_t+{inp.gap}) - f(x_t)")
            + (", PCA-whitened" if config.whiten else ""),
        }
    else:
        info = {"latents": str(inp.source.path), "latent": "as stored" + (", PCA-whitened" if config.whiten else "")}
    info.update({
        "latents analysed": f"{n} ({int((first.domain == 0).sum())} human, {int((first.domain == 1).sum())} robot); "
                            f"stratified sample {len(sample)}",
        "clusters": (f"k-means, k={config.k}{', spherical' if config.spherical else ''}, nredo={config.nredo}, "
                     + ("scikit-learn MiniBatchKMeans" if km_method == "minibatch" else "FAISS Lloyd, greedy k-means++ init")
                     + " on the sample (size rule), every latent assigned by FAISS"),
        "2-D map": ("UMAP (FAISS kNN, n_neighbors=%d, seed %d), fitted on a sample, transform for the rest"
                    % (config.n_neighbors, config.seed)) if method == "umap" else "PCA (first two components; UMAP off)",
        "kNN index": str(knn_index or "none"),
        **(extra_info or {}),
    })
    return info


def _write_outputs(tmp: Path, config: AnalyzeConfig, inp: _Input, results: dict[str, _ViewResult], first: LatentSet,
                   n: int, method: str) -> list[tuple[str, Path]]:
    """latents.h5 and the figures (maps by embodiment, task and cluster; galleries when there are frames)
    into ``tmp``; returns the figures as (caption, path)."""
    views = {v: r.view for v, r in results.items()}
    save_latents(tmp / "latents.h5", views, inp.tasks, attrs={"config": asdict(config)})
    fig_idx = stratified_sample(first.domain, first.task, FIGURE_POINTS, config.seed)
    figs = []
    for what in ("embodiment", "task", "cluster"):
        p = map_figure(tmp / f"{method}_by_{what}.png", views, what, inp.tasks, idx=fig_idx)
        cap = f"{method.upper()} of latent actions by {what}" + (" (frozen | adapted)" if len(views) > 1 else "")
        if len(fig_idx) < n:
            cap += f" ({len(fig_idx)} of {n} latents, stratified sample)"
        figs.append((cap, p))
    if inp.pairs is not None:
        read_pair = _pair_reader(inp.pairs, inp.gap)
        for vname, r in results.items():
            p = gallery_figure(tmp / f"gallery_{vname}.png", r.view, r.dists, read_pair, title=f"{vname} clusters",
                               max_clusters=config.gallery_clusters)
            figs.append((f"Cluster gallery ({vname})", p))
    return figs


def _pair_reader(pairs: PairsFile, gap: int) -> Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]:
    """(domain, clip, t) -> frames (x_t, x_{t+gap}) of ``pairs``, for the cluster galleries."""
    def read_pair(d: int, clip: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        f = pairs.read_clip(DOMAINS[d], clip, frames=[t, t + gap])
        return f[0], f[1]
    return read_pair


def _frame_reader(pairs: PairsFile) -> Callable[[int, int, int], np.ndarray]:
    """(domain, clip, t) -> frame x_t of ``pairs``, for the hover thumbnails."""
    def read_frame(d: int, clip: int, t: int) -> np.ndarray:
        return pairs.read_clip(DOMAINS[d], clip, frames=[t])[0]
    return read_frame


def run_analysis(config: AnalyzeConfig, frozen: torch.nn.Module | None = None, adapted: torch.nn.Module | None = None,
                 log: Callable[[str], None] = print, extra_info: dict | None = None) -> AnalysisResult:
    """Run the whole analysis and write ``config.out`` atomically (a crash leaves the old one).

    ``frozen`` / ``adapted`` follow the Encoder contract (uint8 [B,H,W,3] -> [B, D]); with
    ``config.latents`` no encoder is used and the stored latents are read in chunks. Under
    ``torchrun`` / ``accelerate launch`` the encoder pass is sharded over the processes
    (:func:`_encode`); the main process does the rest, the others return after the pass
    (``is_main`` False, no metrics).

    The steps: reuse a previous run's stages (:func:`_open_cache`), 1. latents (the encoder pass,
    :func:`_encode_pairs`, or :func:`_read_stored_latents`; checked by :func:`_check_latents`),
    the shared sample (:func:`_draw_sample`), 2-4. per view clusters, 2-D map and metrics
    (:func:`_analyse_view`), 5. outputs (:func:`_write_outputs`, :func:`_report_info`, the report).
    """
    out = Path(config.out)
    check_output_dir(out, config.overwrite)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    reused: list[str] = []
    cache_file, cached = _open_cache(out, config, log)

    # -- 1. latents
    t0 = time.perf_counter()
    if config.latents:
        inp = _read_stored_latents(config, cached, notes, reused)
    else:
        if frozen is None:
            raise HRAlignError("run_analysis: `frozen` encoder is required with --pairs")
        shard = current_shard()
        pairs, latsets, lat_keys, gap, lam, pair_idx, frozen = _encode_pairs(config, frozen, adapted, notes, cached,
                                                                             reused, shard)
        if not shard.is_main:  # this process's share of the encoder pass is with the main process
            pairs.close()
            if cache_file is not None:
                cache_file.close()
            return AnalysisResult(out=out, metrics={}, is_main=False)
        if shard.world > 1:
            notes.append(f"encoder pass sharded over {shard.world} processes (whole batches each: the latents one "
                         "process computes); clusters, maps and metrics in the main process.")
        inp = _Input(latsets, lat_keys, gap, pairs.tasks, pairs=pairs, frozen=frozen, lam=lam, pair_idx=pair_idx)
    timings["latents_s"] = time.perf_counter() - t0
    rss = {"latents": _peak_rss_mb()}  # peak RSS so far after each stage (MB): which step needs the memory
    n = _check_latents(config, inp.latsets)
    first = next(iter(inp.latsets.values()))

    # -- sample: stratified by embodiment and task, shared by every view (same metadata)
    t0 = time.perf_counter()
    sample = _draw_sample(config, first, n, notes)
    timings["sample_s"] = time.perf_counter() - t0
    rss["sample"] = _peak_rss_mb()

    # -- 2-4. per view: space, clusters, 2-D map, metrics
    timings.update(cluster_s=0.0, map_s=0.0, metrics_s=0.0)
    use_cache = "latents" in reused
    km_method = choose_method(len(sample), config.k)  # the size rule (cluster.py)
    results = {vname: _analyse_view(vname, ls, inp.lat_keys[vname], sample, km_method, config,
                                    cached.get(vname) if use_cache else None, inp.pairs is not None, notes, reused,
                                    timings, rss)
               for vname, ls in inp.latsets.items()}
    metrics = {v: r.metrics for v, r in results.items()}
    method = next(iter(results.values())).view.map_method
    knn_index = next(iter(metrics.values())).get("knn_index")

    # -- 5. outputs, written to a temporary directory that replaces `out` at the end
    t0 = time.perf_counter()
    info = _report_info(config, inp, first, n, sample, km_method, method, knn_index, extra_info)
    if inp.pairs is None:
        notes.append("--latents input: no frames, so no cluster galleries or hover thumbnails.")
    with atomic_dir(out) as tmp:
        figs = _write_outputs(tmp, config, inp, results, first, n, method)
        read_frame = _frame_reader(inp.pairs) if inp.pairs is not None else None
        scatter = scatter_payload({v: r.view for v, r in results.items()}, inp.tasks, read_frame,
                                  max_points=config.scatter_points, seed=config.seed)
        timings["outputs_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        summary = {"views": metrics, "notes": notes, "timings": timings, "reused": reused,
                   "config": asdict(config), "map_method": method, "peak_rss_mb": _peak_rss_mb(),
                   "peak_rss_after_stage_mb": rss,
                   "num_sampled": len(sample)}
        write_text_atomic(tmp / "metrics.json", json.dumps(summary, indent=2))
        write_report(tmp / "report.html", title="hralign latent-action analysis", info=info, notes=notes,
                     metrics=metrics, figures=figs, scatter=scatter)
    inp.close()
    if cache_file is not None:
        cache_file.close()
    return AnalysisResult(out=out, metrics=metrics, notes=notes, timings=timings, reused=reused)


def format_metrics(metrics: dict[str, dict]) -> str:
    """A plain-text table of the main metrics, one column per view (what the CLI prints)."""
    names = list(metrics)
    lines = [f"{'metric':38s}" + "".join(f"{n:>12s}" for n in names)]
    for key, label, _ in METRIC_ROWS:
        if key in LAM_ONLY and all(metrics[n].get(key) is None for n in names):
            continue
        lines.append(f"{label:38s}" + "".join(f"{_fmt(metrics[n].get(key)):>12s}" for n in names))
    return "\n".join(lines)
