"""Diagnostics beside every base: what a pretrained encoder gives a robot policy, before any rollout.

Why: a rollout table costs hours and answers "did this base help"; these figures cost a minute
and say what each base changed (issue 28 of the v2 benchmark: the corpus base's frames sat in few
directions and BC fitted them slowly). Each figure reuses the one definition the repository has:

* ``frame_pr``: :func:`hralign.metrics.participation_ratio` of every robot frame's features (the
  geometry R3M's BatchNorm BC head trains on);
* the action probe: :func:`hralign.metrics.action_probe_r2` (ridge, grouped K-fold by clip), with
  its proprio-only floor and features + proprio;
* BC demo fit: ``hralign sim eval``'s BC (:func:`hralign.sim.evaluate.row_policy` under ``robot``,
  trained by :func:`hralign.policy.fit_demos` at a fixed step budget) on the robot clips minus a
  seeded share of every task's episodes (:func:`hralign.sim.evaluate.heldout_split`, as
  benchmarks/gr1_fit.py), its action MSE on the training frames and on the held-out episodes;
* robot->robot kNN task accuracy: :func:`hralign_bench.alignment.spread_figures` (leave-one-out,
  mean-pooled clip descriptors), with the clip spread it reports.

All from one encoder pass over the robot clips, cached per base (:func:`robot_features`).
:func:`rank_table` sets each diagnostic beside closed-loop success across bases with Spearman's rho
(:func:`hralign.metrics.rank_correlation`); :func:`closed_loop_success` reads that success from v2
``results.json`` files.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hralign.atomic import atomic_path
from hralign.config_checks import check_int, check_ints, check_number
from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2, participation_ratio, rank_correlation
from hralign.pairs import PairsFile
from hralign.policy import DemoSet, DemoTraining, EncoderSource, demo_error, fit_demos
from hralign.policy.demos import table_mse
from hralign.policy.features import features_by_clip
from hralign_bench.alignment import spread_figures

# diagnostic -> True where higher is better (the sign a useful diagnostic's rho with success should have)
DIAGNOSTICS = {"frame_pr": True, "action_probe_r2": True, "action_probe_r2_with_proprio": True,
               "bc_train_mse": False, "bc_heldout_mse": False, "knn_r2r": True}
FEATURES_FORMAT = 1  # bump when the cached features' layout changes


@dataclass
class DiagnosticsConfig:
    """How the diagnostics of one base are measured (the same for every base compared)."""

    bc_steps: int = field(default=1000, metadata={"help": "BC optimiser steps of the demo fit (sim eval's default "
                                                          "--steps)."})
    batch_size: int = field(default=256, metadata={"help": "Frames per BC step (sim eval's default)."})
    heldout: float = field(default=0.2, metadata={"help": "Share of each task's robot episodes held out of the BC fit."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the held-out episode draw."})
    bc_seed: int = field(default=0, metadata={"help": "Seed of the BC initialisation and batches."})
    probe_folds: int = field(default=5, metadata={"help": "Grouped folds of the action probe (by clip)."})
    knn_k: int = field(default=5, metadata={"help": "Neighbours of the robot->robot kNN (leave-one-out)."})

    def __post_init__(self) -> None:
        check_ints(self, ("bc_steps", "batch_size", "knn_k"), 1)
        check_ints(self, ("split_seed", "bc_seed"), 0)
        check_int(self.probe_folds, "probe_folds", 2)
        check_number(self.heldout, "heldout", 0, 1, lo_open=True, hi_open=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _source_key(source: EncoderSource) -> dict[str, Any]:
    """What identifies a base's features: the source and, for a directory, the state of its weight files."""
    key: dict[str, Any] = {"source": source.to_dict()}
    for name in ("encoder", "weights", "adapter"):
        v = getattr(source, name)
        if v is not None and ":" not in v and Path(v).is_dir():
            key[name + "_files"] = [_file_key(f) for f in sorted(Path(v).iterdir()) if f.is_file()]
        elif v is not None and ":" not in v and Path(v).is_file():
            key[name + "_files"] = [_file_key(Path(v))]
    return key


def robot_features(pairs: PairsFile, source: EncoderSource, cache: str | Path | None = None) -> dict[int, torch.Tensor]:
    """``{clip: [T, D]}`` of every robot clip through ``source``'s robot encoder: one pass, reused from
    ``cache`` (a .pt file) when it was written for the same file, source and weight files."""
    key = {"format": FEATURES_FORMAT, "pairs": _file_key(Path(pairs.path)), **_source_key(source)}
    key = json.loads(json.dumps(key))  # plain types, as torch.load gives them back
    if cache is not None and Path(cache).is_file():
        saved = torch.load(cache, weights_only=True)
        if isinstance(saved, dict) and saved.get("key") == key:
            return saved["features"]
    torch.manual_seed(0)  # a random-init encoder: the same draw every time
    feats = features_by_clip(source.robot_encoder(), pairs, "robot", np.arange(pairs.num_clips("robot")))
    if cache is not None:
        with atomic_path(cache) as tmp:
            torch.save({"key": key, "features": feats}, tmp)
    return feats


def bc_fit(pairs: PairsFile, feats: dict[int, torch.Tensor], config: DiagnosticsConfig) -> dict[str, Any]:
    """Sim eval's BC (``robot`` protocol) on the robot clips minus a seeded held-out share of each task's
    episodes, ``config.bc_steps`` steps; its action MSE on the training frames and on the held-out ones."""
    from hralign.sim.evaluate import SimEvalConfig, heldout_split, row_policy

    rp = row_policy(SimEvalConfig(protocol="robot", steps=config.bc_steps, batch_size=config.batch_size))
    train, held = heldout_split(pairs, {"robot": np.arange(pairs.num_clips("robot"))}, config.heldout,
                                config.split_seed)
    if "robot" not in held:
        raise HRAlignError(f"{pairs.path}: no robot episode is held out at `heldout` {config.heldout} (a task needs "
                           "at least 2 episodes)")
    demos = DemoSet(pairs, {"robot": feats}, train, held)
    with tempfile.TemporaryDirectory() as run:
        policy, _, instr = fit_demos(rp.config, demos, DemoTraining(config.bc_seed, config.bc_steps, config.batch_size,
                                                                    Path(run), options=rp.options))
    return {"bc_train_mse": demo_error(policy, demos, instr), "bc_heldout_mse": table_mse(policy, demos.table(True)),
            "bc_train_clips": int(len(train["robot"])), "bc_heldout_clips": int(len(held["robot"]))}


def base_diagnostics(eval_pairs_path: str | Path, source: EncoderSource, config: DiagnosticsConfig | None = None,
                     cache: str | Path | None = None) -> dict[str, Any]:
    """Every diagnostic of one base on the robot clips of an evaluation file (v2's eval.h5).

    ``source``: the base (a registry name = its random init, an encoder or pretrain directory, an
    adapter); ``cache``: where its robot features are kept (:func:`robot_features`). Returns the
    figures of :data:`DIAGNOSTICS` plus the probe's shuffled control and proprio floor, the kNN chance
    level, the clip spread, counts and the seconds each part took.
    """
    config = config or DiagnosticsConfig()
    path = Path(eval_pairs_path)
    if not path.is_file():
        raise HRAlignError(f"eval pairs file {str(path)!r} does not exist")
    pairs = PairsFile(path)
    if "robot" not in pairs.domains or pairs.num_clips("robot") < 2:
        raise HRAlignError(f"{path}: the diagnostics need at least 2 robot clips")
    for name in ("actions", "state"):
        if not pairs.has("robot", name):
            raise HRAlignError(f"{path}: /robot/{name} does not exist; the diagnostics need an evaluation file written "
                               "by `hralign sim collect`")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    feats = robot_features(pairs, source, cache)
    seconds["features"] = time.perf_counter() - t
    clips = np.arange(pairs.num_clips("robot"))
    frames = np.concatenate([feats[int(c)].numpy() for c in clips])
    out: dict[str, Any] = {"clips": int(len(clips)), "frames": int(len(frames)), "feature_dim": int(frames.shape[1])}

    t = time.perf_counter()
    out["frame_pr"] = participation_ratio(frames)
    actions = np.concatenate([pairs.read_clip("robot", int(c), name="actions") for c in clips])
    state = np.concatenate([pairs.read_clip("robot", int(c), name="state") for c in clips])
    groups = np.repeat(clips, [len(feats[int(c)]) for c in clips])
    probe = action_probe_r2(frames, actions, groups, folds=config.probe_folds, proprio=state)
    out.update({k: probe[k] for k in ("action_probe_r2", "action_probe_r2_proprio", "action_probe_r2_with_proprio",
                                      "action_probe_r2_shuffled")})
    seconds["probe"] = time.perf_counter() - t

    t = time.perf_counter()
    spread = spread_figures(np.stack([feats[int(c)].numpy().mean(0) for c in clips]), pairs.clip_tasks("robot")[clips],
                            config.knn_k)
    out.update({"knn_r2r": spread["knn_r2r"], "knn_chance": spread["chance"], "tasks": spread["tasks"],
                "robot_cos": spread["robot_cos"], "relative_std": spread["relative_std"]})
    seconds["knn"] = time.perf_counter() - t

    t = time.perf_counter()
    out.update(bc_fit(pairs, feats, config))
    seconds["bc"] = time.perf_counter() - t
    return {**out, "config": config.to_dict(), "seconds": seconds}


def closed_loop_success(results_paths: list[str | Path], protocol: str = "robot") -> dict[str, dict[str, Any]]:
    """Row -> {"per_file": [mean success over seeds, one per results.json], "mean": their mean} under
    ``protocol``, for the rows every file has (v2 results: 'random-init', 'frozen', adapters, ...).

    Also each row's ``demo_mse`` (sim eval's BC training-frame MSE on all demos, mean over seeds and
    files) where the file records it: the BC demo fit of the closed-loop run itself.
    """
    if not results_paths:
        raise HRAlignError("closed-loop success: give at least one v2 results.json")
    tables = []
    for p in results_paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HRAlignError(f"results file {str(path)!r}: cannot read it as JSON ({type(e).__name__})") from None
        table = data.get("table", {}).get(protocol) if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise HRAlignError(f"results file {str(path)!r}: no table for protocol {protocol!r}; expected a v2 "
                               "results.json with table.<protocol>.<row>.per_seed")
        tables.append(table)
    rows = [r for r in tables[0] if all(r in t for t in tables[1:])]
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        per_file = [float(np.mean([s["success"] for s in t[r]["per_seed"]])) for t in tables]
        mse = [s["demo_mse"] for t in tables for s in t[r]["per_seed"] if s.get("demo_mse") is not None]
        out[r] = {"per_file": per_file, "mean": float(np.mean(per_file)),
                  "demo_mse": float(np.mean(mse)) if mse else None}
    return out


def rank_table(diagnostics: dict[str, dict[str, Any]], success: dict[str, float], keys: tuple[str, ...] | None = None,
               samples: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Diagnostic -> Spearman's rho with closed-loop success across the bases both name, with its
    bootstrap interval over bases (:func:`hralign.metrics.rank_correlation`) and the sign a useful
    diagnostic should have (``higher_is_better``). Bases lacking a diagnostic are left out of its row."""
    keys = keys or tuple(DIAGNOSTICS)
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        names = [n for n in diagnostics if n in success and isinstance(diagnostics[n].get(k), (int, float))
                 and np.isfinite(diagnostics[n][k])]
        if len(names) < 2:
            out[k] = {"bases": names, "n": len(names), "rho": None, "lo": None, "hi": None,
                      "note": "fewer than 2 bases with this diagnostic and a closed-loop success"}
            continue
        res = rank_correlation([diagnostics[n][k] for n in names], [success[n] for n in names], samples=samples,
                               seed=seed)
        out[k] = {"bases": names, **res, "higher_is_better": DIAGNOSTICS.get(k)}
    return out


def format_diagnostics(bases: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per base."""
    lines = ["| base | frame PR | action probe R² (proprio only; features+proprio) | BC demo MSE train | "
             "BC demo MSE held-out | kNN r→r (chance) | clips (held out) | s (features / probe / BC) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in bases.items():
        s = d["seconds"]
        lines.append(f"| {name} | {d['frame_pr']:.2f} | {d['action_probe_r2']:.3f} ({d['action_probe_r2_proprio']:.3f}; "
                     f"{d['action_probe_r2_with_proprio']:.3f}) | {d['bc_train_mse']:.4f} | {d['bc_heldout_mse']:.4f} | "
                     f"{d['knn_r2r']:.2f} ({d['knn_chance']:.2f}) | {d['clips']} ({d['bc_heldout_clips']}) | "
                     f"{s['features']:.0f} / {s['probe']:.0f} / {s['bc']:.0f} |")
    return "\n".join(lines)


def format_ranks(ranks: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per diagnostic, rho [95% interval] and the bases it was measured on."""
    lines = ["| diagnostic | bases | Spearman rho [95% bootstrap over bases] | useful sign |", "|---|---|---|---|"]
    for k, r in ranks.items():
        if r["rho"] is None:
            lines.append(f"| {k} | {r['n']} | - ({r['note']}) | |")
            continue
        ci = "[not defined]" if r["lo"] is None else f"[{r['lo']:+.2f}, {r['hi']:+.2f}]"
        sign = {True: "+", False: "-", None: "?"}[r.get("higher_is_better")]
        lines.append(f"| {k} | {r['n']} | {r['rho']:+.2f} {ci}{' (' + r['note'] + ')' if r.get('note') else ''} "
                     f"| {sign} |")
    return "\n".join(lines)


__all__ = ["DIAGNOSTICS", "DiagnosticsConfig", "base_diagnostics", "bc_fit", "closed_loop_success", "format_diagnostics",
           "format_ranks", "rank_table", "robot_features"]
