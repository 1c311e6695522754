"""Sequential evaluation (hralign.sim.sequential): the rule, its error rate, rounds that reuse the trained
policies, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.sim.env import metaworld_available
from hralign.sim.sequential import (
    SPENDING,
    SequentialConfig,
    comparisons_against,
    decide,
    null_pair,
    paired_interval,
    replay,
    run_rounds,
    simulate_null,
)

_OK, _WHY = metaworld_available()


@pytest.mark.parametrize("kwargs", [{"target_half_width": 0}, {"target_half_width": 1}, {"target_half_width": -0.1},
                                    {"target_half_width": 1.5}, {"round_size": 0}, {"alpha": 0}])
def test_config_refuses_bad_values(kwargs):
    with pytest.raises(HRAlignError) as e:
        SequentialConfig(**kwargs)
    assert "\n" not in str(e.value) and "--" in str(e.value)


def test_looks_and_a_maximum_below_one_round():
    cfg = SequentialConfig(round_size=10)
    assert cfg.looks(60) == 6 and cfg.looks(61) == 7 and cfg.upto(7, 61) == 61 and cfg.upto(2, 61) == 20
    with pytest.raises(HRAlignError, match="below one round"):
        cfg.looks(9)


def test_interval_resolves_a_clear_difference_and_not_equal_rows():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.1, 0.9, 120)
    better = (rng.random((4, 120)) < np.clip(q + 0.4, 0, 1)).astype(float)
    same_a = (rng.random((4, 120)) < q).astype(float)
    same_b = (rng.random((4, 120)) < q).astype(float)
    up = paired_interval(better, same_b, 0.95)
    assert up["lo"] > 0 and up["diff"] > 0.2
    eq = paired_interval(same_a, same_b, 0.95)
    assert eq["lo"] < 0 < eq["hi"]


def test_pseudo_goals_keep_an_all_failed_round_from_stopping_as_precise():
    zeros = np.zeros((4, 6))
    state = decide(zeros, zeros, 1, 6, SequentialConfig(round_size=3, target_half_width=0.1))
    assert state["half_width"] > 0.1 and state["stop"] is None


def test_replay_stops_a_large_difference_early_and_runs_a_null_to_the_end():
    rng = np.random.default_rng(1)
    cfg = SequentialConfig(round_size=10, target_half_width=0.02)
    q = rng.uniform(0.0, 0.4, 120)
    base = (rng.random((4, 120)) < q).astype(float)
    strong = (rng.random((4, 120)) < q + 0.5).astype(float)
    early = replay(strong, base, 60, 2, cfg)
    assert early["stop"] == "resolved" and early["diff"] > 0 and early["rollouts"] < strong.size
    null = replay((rng.random((4, 120)) < q).astype(float), base, 60, 2, cfg)
    assert null["stop"] == "max" and null["rollouts"] == base.size


def test_spending_schedules_sum_to_alpha():
    for name in SPENDING:
        cfg = SequentialConfig(spending=name)
        shares = [cfg.look_alpha(k, 6) for k in range(1, 7)]
        assert abs(sum(shares) - 0.05) < 1e-12 and min(shares) >= 0
    obf, pocock = SequentialConfig(spending="obrien-fleming"), SequentialConfig(spending="pocock")
    assert obf.look_alpha(1, 6) < 1e-4 < pocock.look_alpha(1, 6) and obf.look_alpha(6, 6) > pocock.look_alpha(6, 6)
    with pytest.raises(HRAlignError, match="--spending"):
        SequentialConfig(spending="haybittle")


@pytest.mark.parametrize("spending", ["obrien-fleming", "bonferroni"])
def test_null_simulation_declares_at_most_alpha_even_with_large_seed_effects(spending):
    """Alpha spent over the looks plus the few-seeds correction: at most alpha of null comparisons declared
    (six looks each at 95% declare more: the naive schedule below)."""
    cfg = SequentialConfig(round_size=10, target_half_width=0.05, spending=spending)
    r = simulate_null(1000, 4, 2, 30, cfg, np.random.default_rng(2), success=0.4, seed_effect=1.0)
    assert r["rate"] <= 0.05
    naive = SequentialConfig(round_size=10, target_half_width=0.05, alpha=0.05 * cfg.looks(30),
                             spending="bonferroni")  # 95% at each look
    r_naive = simulate_null(300, 4, 2, 30, naive, np.random.default_rng(2), success=0.4, seed_effect=0.5)
    assert r_naive["rate"] > r["rate"]


def test_run_rounds_drops_stopped_rows_and_keeps_the_reference_while_needed():
    rng = np.random.default_rng(3)
    q = rng.uniform(0.0, 0.3, 2 * 40)
    full = {"ref": (rng.random((2, 80)) < q).astype(float), "big": (rng.random((2, 80)) < q + 0.7).astype(float),
            "same": (rng.random((2, 80)) < q).astype(float)}
    calls = []

    def run_round(rows, upto):
        calls.append((sorted(rows), upto))
        cols = np.concatenate([np.arange(t * 40, t * 40 + upto) for t in range(2)])
        return {r: full[r][:, cols] for r in rows}

    res = run_rounds(run_round, comparisons_against(["ref", "big", "same"], "ref"),
                     SequentialConfig(round_size=10, target_half_width=0.01), 40)
    stops = {c["row"]: c for c in res["comparisons"]}
    assert stops["big"]["stop"] == "resolved" and stops["same"]["stop"] == "max"
    assert calls[0] == (["big", "ref", "same"], 10) and calls[-1] == (["ref", "same"], 40)
    assert res["rollouts"]["big"] < res["rollouts"]["ref"] == res["rollouts"]["same"] == 2 * 80


def test_comparisons_must_pair_two_rows_of_the_evaluation():
    assert comparisons_against(["a", "b", "c"], "a", [("b", "c")]) == [("b", "a"), ("c", "a"), ("b", "c")]
    with pytest.raises(HRAlignError, match="not evaluated"):
        comparisons_against(["a", "b"], "frozen")
    with pytest.raises(HRAlignError, match="paired comparison"):
        comparisons_against(["a", "b"], "a", [("b", "other-draw")])


@pytest.mark.parametrize("extra, match", [
    (["--target-half-width", "0"], "--target-half-width"),
    (["--target-half-width", "1"], "--target-half-width"),
    (["--rollouts", "4", "--round-size", "5"], "below one round"),
    (["--no-proprio-row"], "paired design"),
    (["--round-by", "tasks"], "--round-by"),
    (["--seeds", "2", "--round-by", "seeds", "--round-size", "3"], "--seeds 2: below one round"),
])
def test_sim_eval_sequential_bad_input_one_line_exit_2(tmp_path, extra, match):
    code, _, stderr = run_cli("sim", "eval", "--pairs", str(tmp_path / "none.h5"), "--encoder", "r3m-resnet18",
                              "--sequential", "--out", str(tmp_path / "ev"), *extra)
    assert code == 2 and match in stderr and len(stderr.strip().splitlines()) == 1


def test_bench_sequential_refuses_the_unpaired_draws_comparison(tmp_path):
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "a"), "--report", "--compare",
                              str(tmp_path / "b"), "--sequential")
    assert code == 2 and "not a paired design" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not _OK, reason=f"[sim] extra not usable: {_WHY}")
def test_rounds_reuse_the_saved_policies_and_match_one_shot(tmp_path, monkeypatch, push_demos):
    """A sequential evaluation trains each (row, seed) once, and its outcomes equal a one-shot evaluation's."""
    import hralign.sim.evaluate as ev
    from hralign.policy import EncoderSource

    path = push_demos
    cfg = ev.SimEvalConfig(protocol="robot", rollouts=4, seeds=2, steps=20, batch_size=32, max_steps=12, envs=2)
    variants = {"proprio-only": None, "enc": EncoderSource("r3m-resnet18", image_size=32)}
    one = ev.evaluate_sim(path, tmp_path / "one", variants, cfg, progress=False)
    trained = []
    real = ev._train_seed
    monkeypatch.setattr(ev, "_train_seed", lambda *a, **k: trained.append(a[3]) or real(*a, **k))
    seq = ev.evaluate_sequential(path, tmp_path / "seq", variants, cfg,
                                 SequentialConfig(round_size=2, target_half_width=0.01), "proprio-only", progress=False)
    assert sorted(trained) == [0, 0, 1, 1]  # two rows x two seeds, each trained once over both rounds
    for name in variants:
        assert [r["per_goal"] for r in seq["variants"][name]["per_seed"]] == \
               [r["per_goal"] for r in one["variants"][name]["per_seed"]]
    (c,) = seq["sequential"]["comparisons"]
    assert c["stop"] in ("resolved", "max") and c["rollouts"] == 2 * (2 if c["stop"] == "resolved" and c["look"] == 1
                                                                       else 4)
    saved = json.loads((tmp_path / "seq" / "enc" / "seed1.json").read_text())
    assert len(saved["per_goal"]["push"]) == seq["sequential"]["rollouts"]["enc"] // 2
    # rounds that add BC seeds instead: seed k is trained in round k+1 and rolled out on every goal
    trained.clear()
    by_seed = ev.evaluate_sequential(path, tmp_path / "seeds", variants, cfg,
                                     SequentialConfig(round_size=1, round_by="seeds", target_half_width=0.01),
                                     "proprio-only", progress=False)
    assert sorted(trained) == [0, 0] + ([1, 1] if by_seed["sequential"]["comparisons"][0]["look"] == 2 else [])
    for name in variants:
        for got, want in zip(by_seed["variants"][name]["per_seed"], one["variants"][name]["per_seed"]):
            assert got["per_goal"] == want["per_goal"]


def test_null_pair_draws_two_rows_of_equal_expected_success():
    a, b = null_pair(np.random.default_rng(4), 400, 300, 0.3, 0.5)
    assert a.shape == b.shape == (400, 300) and set(np.unique(a)) <= {0.0, 1.0}
    assert abs(a.mean() - b.mean()) < 0.02 and abs(a.mean() - 0.3) < 0.05
    assert np.corrcoef(a.mean(0), b.mean(0))[0, 1] > 0.5  # the goals' difficulty is shared: paired outcomes
