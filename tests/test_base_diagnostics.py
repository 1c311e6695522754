"""Diagnostics beside every base (hralign_bench.diagnostics), the rank correlation (hralign.metrics) and
benchmarks/base_diagnostics.py's bad-input handling."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hralign.errors import HRAlignError

ROOT = Path(__file__).resolve().parents[1]
TINY = "timm:resnet10t"  # a small random-init encoder


def _script():
    spec = importlib.util.spec_from_file_location("base_diagnostics_script", ROOT / "benchmarks" / "base_diagnostics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_base_diagnostics_on_a_tiny_file_and_its_feature_cache(small_pairs, tmp_path, monkeypatch):
    import hralign_bench.diagnostics as diag
    from hralign.metrics import action_probe_r2, participation_ratio
    from hralign.pairs import PairsFile
    from hralign.policy import EncoderSource

    cfg = diag.DiagnosticsConfig(bc_steps=30, batch_size=64)
    source = EncoderSource(TINY, image_size=48)
    cache = tmp_path / "features.pt"
    d = diag.base_diagnostics(small_pairs, source, cfg, cache=cache)
    pf = PairsFile(small_pairs)
    n = pf.num_clips("robot")
    assert (d["clips"], d["tasks"], d["bc_train_clips"] + d["bc_heldout_clips"]) == (n, 8, n)
    assert d["bc_heldout_clips"] == 8  # round(0.2 * 4) episodes of each of the 8 tasks
    assert 1.0 <= d["frame_pr"] <= d["feature_dim"] and 0.0 <= d["knn_r2r"] <= 1.0 and d["knn_chance"] == 1 / 8
    assert 0 < d["bc_train_mse"] < 10 and 0 < d["bc_heldout_mse"] < 10
    # the figures are the one definitions, on the cached features
    feats = diag.robot_features(pf, source, cache)
    frames = np.concatenate([feats[c].numpy() for c in range(n)])
    assert d["frame_pr"] == pytest.approx(participation_ratio(frames))
    actions = np.concatenate([pf.read_clip("robot", c, name="actions") for c in range(n)])
    state = np.concatenate([pf.read_clip("robot", c, name="state") for c in range(n)])
    groups = np.repeat(np.arange(n), [len(feats[c]) for c in range(n)])
    probe = action_probe_r2(frames, actions, groups, proprio=state)
    assert d["action_probe_r2"] == pytest.approx(probe["action_probe_r2"])
    assert d["action_probe_r2_proprio"] == pytest.approx(probe["action_probe_r2_proprio"])
    # a second call reads the cache: no encoder pass
    monkeypatch.setattr(diag, "features_by_clip", lambda *a, **k: pytest.fail("encoded again despite the cache"))
    again = diag.base_diagnostics(small_pairs, source, cfg, cache=cache)
    assert again["frame_pr"] == d["frame_pr"] and again["bc_train_mse"] == pytest.approx(d["bc_train_mse"])
    # another base (a different input size) is not served the first one's features
    with pytest.raises(pytest.fail.Exception):
        diag.robot_features(pf, EncoderSource(TINY, image_size=32), cache)


def test_bc_fit_trains_longer_fits_better(small_pairs, tmp_path):
    from hralign.pairs import PairsFile
    from hralign.policy import EncoderSource
    from hralign_bench.diagnostics import DiagnosticsConfig, bc_fit, robot_features

    pf = PairsFile(small_pairs)
    feats = robot_features(pf, EncoderSource(TINY, image_size=48), tmp_path / "f.pt")
    short = bc_fit(pf, feats, DiagnosticsConfig(bc_steps=2, batch_size=64))
    long = bc_fit(pf, feats, DiagnosticsConfig(bc_steps=150, batch_size=64))
    assert long["bc_train_mse"] < short["bc_train_mse"]


def test_diagnostics_refuse_bad_inputs(tmp_path, tiny_pairs):
    from hralign.policy import EncoderSource
    from hralign_bench.diagnostics import DiagnosticsConfig, base_diagnostics

    with pytest.raises(HRAlignError, match="`bc_steps` should be an integer >= 1"):
        DiagnosticsConfig(bc_steps=0)
    with pytest.raises(HRAlignError, match="`heldout` should be a number in"):
        DiagnosticsConfig(heldout=1.0)
    with pytest.raises(HRAlignError, match="does not exist"):
        base_diagnostics(tmp_path / "missing.h5", EncoderSource(TINY))


def test_rank_correlation_on_constructed_data():
    from hralign.metrics import rank_correlation

    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.7])
    perfect = rank_correlation(x, 2 * x + 1)  # same order
    assert perfect["rho"] == pytest.approx(1.0) and perfect["lo"] == pytest.approx(1.0) and perfect["hi"] == pytest.approx(1.0)
    assert rank_correlation(x, -x)["rho"] == pytest.approx(-1.0)
    assert "few distinct resamples" in perfect["note"]
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    noisy = rank_correlation(a, a + rng.normal(size=60), samples=500)
    assert 0.3 < noisy["rho"] < 0.95 and noisy["lo"] < noisy["rho"] < noisy["hi"] and noisy["note"] == ""
    unrelated = rank_correlation(a, rng.normal(size=60), samples=500)
    assert unrelated["lo"] < 0 < unrelated["hi"]
    two = rank_correlation([1.0, 2.0], [5.0, 3.0])
    assert two["rho"] == pytest.approx(-1.0) and two["lo"] is None and "2 items" in two["note"]
    assert rank_correlation([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])["rho"] is None
    for bad, match in ((([1.0, 2.0], [1.0]), "equal length"), (([1.0], [1.0]), "equal length >= 2"),
                       (([1.0, np.nan, 2.0], [1.0, 2.0, 3.0]), "finite")):
        with pytest.raises(HRAlignError, match=match):
            rank_correlation(*bad)


def _v2_results(path: Path, rows: dict[str, tuple[list[float], float | None]]) -> Path:
    table = {r: {"per_seed": [{"seed": i, "success": s, "demo_mse": mse} for i, s in enumerate(succ)]}
             for r, (succ, mse) in rows.items()}
    path.write_text(json.dumps({"table": {"robot": table}}))
    return path


def test_closed_loop_success_and_rank_table(tmp_path):
    from hralign_bench.diagnostics import closed_loop_success, rank_table

    a = _v2_results(tmp_path / "a.json", {"random-init": ([0.3, 0.4], 0.001), "frozen": ([0.2, 0.2], 0.02),
                                          "lora": ([0.25, 0.35], 0.01), "latent": ([0.1, 0.1], None)})
    b = _v2_results(tmp_path / "b.json", {"random-init": ([0.5, 0.5], 0.003), "frozen": ([0.4, 0.4], 0.04),
                                          "lora": ([0.35, 0.35], 0.02)})
    s = closed_loop_success([a, b])
    assert set(s) == {"random-init", "frozen", "lora"}  # the rows both files have
    assert s["random-init"]["per_file"] == pytest.approx([0.35, 0.5]) and s["random-init"]["mean"] == pytest.approx(0.425)
    assert s["frozen"]["demo_mse"] == pytest.approx(0.03)
    diags = {r: {"bc_train_mse": v["demo_mse"], "frame_pr": 1.0} for r, v in s.items()}
    ranks = rank_table(diags, {r: v["mean"] for r, v in s.items()}, keys=("bc_train_mse", "frame_pr", "knn_r2r"))
    assert ranks["bc_train_mse"]["rho"] == pytest.approx(-1.0) and ranks["bc_train_mse"]["higher_is_better"] is False
    assert ranks["frame_pr"]["rho"] is None  # constant across bases
    assert ranks["knn_r2r"]["n"] == 0 and ranks["knn_r2r"]["rho"] is None
    with pytest.raises(HRAlignError, match="no table for protocol 'transfer'"):
        closed_loop_success([a], "transfer")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HRAlignError, match="bad.json"):
        closed_loop_success([tmp_path / "bad.json"])


@pytest.mark.parametrize("argv,match", [
    (["run", "--pairs", "missing.h5", "--base", "x=r3m-resnet18", "--out", "o.json"], "--pairs 'missing.h5'"),
    (["run", "--pairs", "PAIRS", "--base", "no-spec", "--out", "o.json"], "expected NAME=SPEC"),
    (["run", "--pairs", "PAIRS", "--base", "x=objective:nope", "--out", "o.json"], "unknown objective"),
    (["run", "--pairs", "PAIRS", "--base", "x=objective:r3m", "--out", "o.json"], "--corpus ''"),
    (["rank", "--results", "missing.json"], "cannot read it as JSON"),
])
def test_script_bad_inputs_one_line_exit_2(argv, match, tiny_pairs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_pairs) if x == "PAIRS" else x for x in argv]
    with pytest.raises(SystemExit) as e:
        _script().main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and match in err, err


def test_script_run_writes_results_and_rank_reads_them(small_pairs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mod = _script()
    out = tmp_path / "res" / "d.json"
    mod.main(["run", "--pairs", str(small_pairs), "--base", f"random-init={TINY}", "--out", str(out),
              "--bc-steps", "10", "--work", str(tmp_path / "work")])
    res = json.loads(out.read_text())
    assert set(res["bases"]) == {"random-init"} and res["bases"]["random-init"]["spec"] == TINY
    assert "| random-init |" in out.with_suffix(".md").read_text()
    mod.main(["run", "--pairs", str(small_pairs), "--base", f"random-init={TINY}", "--out", str(out),
              "--bc-steps", "10", "--work", str(tmp_path / "work")])
    assert "kept from" in capsys.readouterr().out  # same spec and settings: not measured again
    results = _v2_results(tmp_path / "r.json", {"random-init": ([0.4], 0.001), "frozen": ([0.2], 0.02)})
    mod.main(["rank", "--results", str(results), "--diagnostics", str(out), "--out", str(tmp_path / "rank.json")])
    rank = json.loads((tmp_path / "rank.json").read_text())
    (section,) = rank["sections"]
    assert set(section["diagnostics"]) == {"random-init"} and section["ranks"]["frame_pr"]["n"] == 1
