"""MetaWorld v2 benchmark: paired bootstrap, power, task sets (bad input), varied looks, the tiny run.

The MetaWorld tests are skipped, with the reason, where the [sim] extra is not importable.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.sim.env import metaworld_available
from hralign.sim.stats import discordant_share, draw_gap, paired_bootstrap, rollouts_for_difference
from hralign_bench.tasksets import TaskSets, changes

_OK, _WHY = metaworld_available()
needs_mw = pytest.mark.skipif(not _OK, reason=f"[sim] extra not usable: {_WHY}")


def test_paired_bootstrap_known_cases():
    ones, zeros = np.ones((2, 50)), np.zeros((2, 50))
    res = paired_bootstrap({"a": ones, "b": zeros, "c": zeros.copy()}, reference="b", samples=500)
    assert (res["a"]["mean"], res["a"]["lo"], res["a"]["hi"]) == (1.0, 1.0, 1.0)
    assert (res["a"]["diff"], res["a"]["diff_lo"], res["a"]["diff_hi"]) == (1.0, 1.0, 1.0)
    assert (res["c"]["diff"], res["c"]["diff_lo"], res["c"]["diff_hi"]) == (0.0, 0.0, 0.0)  # same outcomes
    assert "diff" not in res["b"]
    # one seed, 400 goals, half succeed: the binomial 95% interval is 0.5 +- 1.96 x 0.025
    half = np.zeros((1, 400))
    half[0, ::2] = 1
    r = paired_bootstrap({"h": half}, samples=4000, seed=1)["h"]
    assert r["mean"] == 0.5 and r["lo"] == pytest.approx(0.451, abs=0.015) and r["hi"] == pytest.approx(0.549, abs=0.015)
    # paired: a row that wins 40 more of the same 400 goals is resolved (+0.10, CI above 0) with a
    # narrower interval than unpaired rows would give (1.96 x sqrt(0.09 / 400) ~ 0.03 vs ~0.07 each side)
    better = half.copy()
    better[0, 1:80:2] = 1
    r = paired_bootstrap({"h": half, "b": better}, reference="h", samples=4000)["b"]
    assert r["diff"] == pytest.approx(0.10) and 0.06 < r["diff_lo"] < 0.10 < r["diff_hi"] < 0.14
    assert r["diff_hi"] - r["diff_lo"] < 0.08
    with pytest.raises(HRAlignError, match="same"):
        paired_bootstrap({"a": np.ones((2, 3)), "b": np.ones((2, 4))})
    with pytest.raises(HRAlignError, match="reference"):
        paired_bootstrap({"a": ones}, reference="frozen")


def test_rollouts_for_difference_and_discordance():
    # (1.95996 + 0.84162)^2 x (0.30 - 0.01) / 0.01 = 227.6
    assert rollouts_for_difference(0.10, 0.30) == 228
    assert rollouts_for_difference(0.10, 0.20) < rollouts_for_difference(0.10, 0.30)  # fewer disagreements, fewer rollouts
    with pytest.raises(HRAlignError, match="discordant"):
        rollouts_for_difference(0.2, 0.1)
    assert discordant_share(np.array([[1, 0, 1, 1]]), np.array([[1, 1, 0, 1]])) == 0.5


def test_draw_gap_separates_a_moved_row_from_noise():
    rng = np.random.default_rng(0)
    first = {"frozen": (rng.random((4, 200)) < 0.3).astype(float), "lora": (rng.random((4, 200)) < 0.5).astype(float)}
    again = {k: (rng.random(v.shape) < v.mean()).astype(float) for k, v in first.items()}  # a second draw, same rates
    moved = {"frozen": again["frozen"], "lora": (rng.random((4, 200)) < 0.9).astype(float)}  # lora moved by +0.4
    same = draw_gap(first, again, reference="frozen", samples=1000)
    assert same["lora"]["lo"] < 0 < same["lora"]["hi"] and same["lora"]["diff_gap_lo"] < 0 < same["lora"]["diff_gap_hi"]
    gap = draw_gap(first, moved, reference="frozen", samples=1000)["lora"]
    assert gap["gap"] == pytest.approx(moved["lora"].mean() - first["lora"].mean())
    assert 0.2 < gap["lo"] and 0.2 < gap["diff_gap_lo"]  # the draws disagree: the interval excludes 0
    # constant rows: the gap is exact
    c = draw_gap({"frozen": np.zeros((2, 5))}, {"frozen": np.ones((3, 5))}, samples=100)["frozen"]
    assert (c["gap"], c["lo"], c["hi"]) == (1.0, 1.0, 1.0)
    with pytest.raises(HRAlignError, match="5 and 6 goals"):
        draw_gap({"frozen": np.zeros((2, 5))}, {"frozen": np.zeros((2, 6))})
    with pytest.raises(HRAlignError, match="no row in both"):
        draw_gap({"a": np.zeros((2, 5))}, {"b": np.zeros((2, 5))})


def test_task_sets_refuse_overlap_and_name_changes():
    with pytest.raises(HRAlignError, match="eval-tasks and --pair-tasks overlap on push"):
        TaskSets(pretrain="reach", pair="push,door-open", eval="push")
    with pytest.raises(HRAlignError, match="eval-tasks and --pretrain-tasks overlap on sweep-into"):
        TaskSets(pretrain="reach,sweep-into-v3", pair="door-open", eval="push,sweep-into")
    with pytest.raises(HRAlignError, match="more than once"):
        TaskSets(pretrain="reach,reach", pair="door-open", eval="push")
    with pytest.raises(HRAlignError, match="pair-tasks and --pretrain-tasks overlap on door-open, reach"):
        TaskSets(pretrain="reach,door-open", pair="door-open,reach", eval="push")
    with pytest.raises(HRAlignError, match="empty"):
        TaskSets(pretrain=" , ", pair="door-open", eval="push")
    t = TaskSets()
    assert len(t.pretrain) >= 20 and not set(t.eval) & (set(t.pair) | set(t.pretrain))
    old = TaskSets(pretrain="reach", pair="door-open", eval="push").to_dict()
    new = TaskSets(pretrain="reach", pair="door-open,drawer-open", eval="sweep-into").to_dict()
    assert changes(old, new) == ["pair tasks: added drawer-open", "eval tasks: added sweep-into; removed push"]
    assert changes(old, old) == []


def test_spread_figures_separate_degenerate_from_spread_clips():
    from hralign_bench.alignment import spread_figures

    rng = np.random.default_rng(0)
    tasks = np.repeat([0, 1, 2], 6)
    one_point = np.ones((18, 8)) + 1e-6 * rng.normal(size=(18, 8))  # the degenerate case: every clip at one point
    d = spread_figures(one_point, tasks)
    assert d["robot_cos"] > 0.9999 and d["relative_std"] < 1e-4 and d["chance"] == pytest.approx(1 / 3)
    centres = 5 * np.eye(3, 8)  # three tight task clusters
    clustered = centres[tasks] + 0.1 * rng.normal(size=(18, 8)) + 1.0
    c = spread_figures(clustered, tasks)
    assert c["knn_r2r"] == 1.0 and c["robot_cos"] < d["robot_cos"] and c["relative_std"] > 0.5
    s = spread_figures(rng.normal(size=(18, 8)), rng.permutation(tasks))  # spread but task-free: kNN near chance
    assert s["knn_r2r"] < 0.7 and (s["clips"], s["tasks"]) == (18, 3)


def test_action_probe_with_proprio_floor_on_robot_clips(small_pairs):
    """The one probe (hralign.metrics.action_probe_r2) with the proprio floor, as the spread stage calls it."""
    from hralign.metrics import action_probe_r2
    from hralign.pairs import PairsFile

    pf = PairsFile(small_pairs)
    clips = np.arange(pf.num_clips("robot"))
    actions = np.concatenate([pf.read_clip("robot", int(c), name="actions") for c in clips])
    state = np.concatenate([pf.read_clip("robot", int(c), name="state") for c in clips])
    groups = np.repeat(clips, [len(pf.read_clip("robot", int(c), name="actions")) for c in clips])
    rng = np.random.default_rng(0)
    told = actions @ rng.normal(size=(actions.shape[1], 16)) + 0.01 * rng.normal(size=(len(actions), 16))
    noise = rng.normal(size=(len(actions), 16))
    good = action_probe_r2(told, actions, groups, proprio=state)
    bad = action_probe_r2(noise, actions, groups, proprio=state)
    shuffled = action_probe_r2(told[rng.permutation(len(told))], actions, groups, proprio=state)
    assert good["action_probe_r2"] > 0.95 and good["action_probe_r2_with_proprio"] > 0.95
    assert bad["action_probe_r2"] < 0.1 and shuffled["action_probe_r2"] < 0.1  # latents that do not encode the action
    assert good["action_probe_r2_proprio"] == bad["action_probe_r2_proprio"]  # the floor does not read the latents
    assert bad["action_probe_r2_with_proprio"] < bad["action_probe_r2_proprio"] + 0.05  # noise adds (almost) nothing
    assert "action_probe_r2_proprio" not in action_probe_r2(told, actions, groups)  # the floor only when asked
    with pytest.raises(HRAlignError, match="proprio"):
        action_probe_r2(told, actions, groups, proprio=state[:-1])


def test_old_results_rows_read_under_their_new_names():
    from hralign_bench.v2 import EVAL_VIEWS_BASE_ROW, format_v2, rename_rows

    old = "old base (v1: eval tasks' human views)"
    assert rename_rows({"spread": {old: {"eval": 1}}, "rows": [{old: 2}]}) == {
        "spread": {EVAL_VIEWS_BASE_ROW: {"eval": 1}}, "rows": [{EVAL_VIEWS_BASE_ROW: 2}]}
    cell = {"clips": 4, "tasks": 2, "robot_cos": 0.5, "relative_std": 0.1, "knn_r2r": 0.75, "chance": 0.5,
            "frame_rank": 3.0}
    results = {"protocols": ["robot"], "tasks": {"pretrain": ["reach"], "pair": ["door-open"], "eval": ["push"]},
               "eval": {"rollouts": 2, "seeds": 1}, "timings_s": {}, "table": {"robot": {"frozen": {}}},
               "stats": {"robot": {"bootstrap": {"frozen": {"mean": 0.5, "lo": 0.0, "hi": 1.0}}, "power": {},
                                   "rollouts_per_cell": 2}},
               "spread": {old: {"eval": {**cell, "probe_r2": 0.637, "probe_r2_proprio": 0.5}},
                          "frozen": {"eval": {**cell, "action_probe_r2": 0.8, "action_probe_r2_proprio": 0.4}}}}
    md = format_v2(results)
    assert f"| {EVAL_VIEWS_BASE_ROW} | eval |" in md and old not in md
    assert "| 0.637* (0.500*) |" in md and "| 0.800 (0.400) |" in md and "earlier probe" in md


def test_alignment_predicts_transfer_ranks_rows():
    """Frame error that falls as transfer rises gives rho -1 (and r->h top-1 that rises with it +1); under 3 rows
    with both there is nothing to rank."""
    from hralign_bench.v2 import alignment_predicts_transfer

    align = {f"r{i}": {"frame_error": 1.0 - 0.2 * i, "r2h_top1": 0.1 * i, "knn_r2h": 0.5} for i in range(4)}
    transfer = {f"r{i}": {"mean": 0.1 * i} for i in range(4)}
    got = alignment_predicts_transfer(align, {**transfer, "human-view oracle": {"mean": 0.9}})
    assert got["frame_error"]["rho"] == pytest.approx(-1.0) and got["r2h_top1"]["rho"] == pytest.approx(1.0)
    assert got["frame_error"]["n"] == 4 and got["knn_r2h"]["rho"] is None  # constant: no rank correlation
    assert alignment_predicts_transfer(align, {"r0": {"mean": 0.0}, "r1": {"mean": 0.1}}) == {}


def test_partial_results_compare_rows_on_the_seeds_frozen_finished(tmp_path):
    from hralign_bench.v2 import finished_cells, partial_results

    with pytest.raises(HRAlignError, match="no tasksets.json"):
        partial_results(tmp_path)
    (tmp_path / "tasksets.json").write_text(json.dumps(TaskSets(pretrain="reach", pair="door-open", eval="push").to_dict()))

    def seed(protocol, row, k, goals):
        d = tmp_path / "eval" / protocol / row.replace(" ", "-").replace(":", "-") / row
        d.mkdir(parents=True, exist_ok=True)
        (d / f"seed{k}.json").write_text(json.dumps({"seed": k, "per_goal": {"push": goals}}))

    seed("robot", "frozen", 0, [0, 0, 1, 0])
    seed("robot", "frozen", 1, [0, 1, 0, 0])
    seed("robot", "adapted:lora-middle", 0, [1, 1, 1, 0])
    seed("robot", "adapted:lora-middle", 1, [1, 1, 0, 1])
    seed("robot", "random-init", 0, [1, 1, 1, 1])  # seed 1 still running: waits, not compared on fewer seeds
    seed("transfer", "random-init", 0, [0, 0, 0, 0])  # no frozen yet: nothing to compare with
    tasks, table, pending = finished_cells(tmp_path)
    assert tasks["eval"] == ["push"] and list(table) == ["robot"] and pending["robot"] == ["random-init"]
    res = partial_results(tmp_path, samples=200)
    assert res["protocols"] == ["robot"] and list(res["table"]["robot"]) == ["frozen", "adapted:lora-middle"]
    assert res["pending"] == {"robot": ["random-init"], "few-shot": [], "transfer": ["random-init"]}
    b = res["stats"]["robot"]["bootstrap"]["adapted:lora-middle"]
    assert b["mean"] == 0.75 and b["diff"] == 0.5  # 6/8 vs 2/8 on the same goals and seeds
    md = (tmp_path / "results_partial.md").read_text()
    assert "PARTIAL" in md and "4 goals/task x 2 BC seeds = 8 rollouts per cell" in md and "robot: random-init" in md
    code, stdout, _ = run_cli("bench", "metaworld-v2", "--out", str(tmp_path), "--report")
    assert code == 0 and "PARTIAL" in stdout and "| adapted:lora-middle | 0.75 [" in stdout
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "elsewhere"), "--report")
    assert code == 2 and "no tasksets.json" in stderr and "Traceback" not in stderr


def test_compare_draws_reads_two_runs_and_refuses_other_settings(tmp_path):
    from hralign_bench.draws import compare_draws

    def run(name, rows, eval_tasks="push", eval_seed=10_000):
        d = tmp_path / name
        d.mkdir()
        (d / "tasksets.json").write_text(json.dumps(TaskSets(pretrain="reach", pair="door-open", eval=eval_tasks).to_dict()))
        for row, seeds in rows.items():
            sd = d / "eval" / "robot" / row.replace(":", "-") / row
            sd.mkdir(parents=True)
            for k, goals in enumerate(seeds):
                (sd / f"seed{k}.json").write_text(json.dumps({"seed": k, "per_goal": {"push": goals}}))
        (d / "eval" / "robot" / "frozen" / "results.json").write_text(json.dumps({"config": {"eval_seed": eval_seed}}))
        return d

    a = run("a", {"frozen": [[0, 0, 1, 0], [0, 1, 0, 0]], "adapted:lora": [[1, 1, 1, 0], [1, 1, 0, 1]]})
    b = run("b", {"frozen": [[1, 0, 1, 0], [0, 1, 0, 0]], "adapted:lora": [[1, 1, 1, 1], [1, 1, 1, 1]],
                  "random-init": [[1, 1, 1, 1], [1, 1, 1, 1]]})
    res = compare_draws(a, b, samples=200)
    e = res["protocols"]["robot"]
    assert e["rows"] == ["frozen", "adapted:lora"] and res["only_in"]["robot"] == ["random-init"]
    assert e["pooled"]["adapted:lora"]["mean"] == 14 / 16 and e["pooled"]["adapted:lora"]["diff"] == (14 - 5) / 16
    assert e["gap"]["adapted:lora"]["gap"] == 0.25 and e["gap"]["frozen"]["gap"] == 0.125
    code, stdout, _ = run_cli("bench", "metaworld-v2", "--out", str(a), "--report", "--compare", str(b))
    assert code == 0 and "| adapted:lora | 0.75 [" in stdout and "moved between draws" in stdout
    assert (a / "results_draws.md").read_text() == stdout.rstrip("\n") + "\n" and not (b / "results_draws.md").exists()
    # a different setting is refused, naming what differs
    other = run("c", {"frozen": [[0, 0, 1, 0]]}, eval_tasks="push,sweep-into")
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(a), "--report", "--compare", str(other))
    assert code == 2 and "task sets differ" in stderr and "added sweep-into" in stderr and "Traceback" not in stderr
    goals = run("d", {"frozen": [[0, 0, 1, 0]]}, eval_seed=7)
    with pytest.raises(HRAlignError, match="eval_seed 10000 vs 7"):
        compare_draws(a, goals)
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(a), "--compare", str(b))
    assert code == 2 and "only with --report" in stderr


def test_v2_config_refuses_bad_latent_sizes(tmp_path):
    from hralign_bench.v2 import V2Config
    from hralign.sim.latent import SimLatentConfig

    assert V2Config(lam_steps=0).lam_steps == 0  # 0 = no latent-chain rows
    with pytest.raises(HRAlignError, match="lam_steps.*>= 0.*-1"):
        V2Config(lam_steps=-1)
    with pytest.raises(HRAlignError, match="latent_steps"):
        V2Config(latent_steps=1.5)
    with pytest.raises(HRAlignError, match="no such file"):
        SimLatentConfig(labels=str(tmp_path / "labels.h5"))


def test_v2_base_by_objective_or_by_path(tmp_path, monkeypatch):
    """The base is pretrained with the chosen objective and architecture, or taken from a directory; a resume
    that would change it is refused (its finished rows were built on the first base)."""
    import hralign_bench.v2 as v2

    with pytest.raises(HRAlignError, match="`pretrain_objective` should be one of r3m, .*'nope'"):
        v2.V2Config(pretrain_objective="nope")
    with pytest.raises(HRAlignError, match="`base` .*no hralign.json"):
        v2.V2Config(base=str(tmp_path))
    calls = []
    monkeypatch.setattr(v2, "pretrain_stage", lambda target, corpus, cfg, progress: calls.append(
        (cfg.pretrain_objective, cfg.base_encoder)) or target)
    run = tmp_path / "run"
    run.mkdir()
    cfg = v2.V2Config(pretrain_objective="tcn-infonce", base_encoder="timm:vit_tiny_patch16_224")
    assert v2.base_stage(run, tmp_path / "corpus.h5", cfg, False) == run / "pretrain"
    assert calls == [("tcn-infonce", "timm:vit_tiny_patch16_224")]
    with pytest.raises(HRAlignError, match="the base changed since the run started"):
        v2.base_stage(run, tmp_path / "corpus.h5", v2.V2Config(), False)
    given = tmp_path / "enc"
    given.mkdir()
    (given / "hralign.json").write_text("{}")
    other = tmp_path / "run2"
    other.mkdir()
    assert v2.base_stage(other, tmp_path / "corpus.h5", v2.V2Config(base=str(given)), False) == given
    assert len(calls) == 1  # nothing pretrained for a given base
    assert json.loads((other / "base.json").read_text())["base"] == str(given.resolve())
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "cli"), "--set", "pretrain_objective=nope")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "pretrain_objective" in stderr


def test_v2_lam_given_by_path_is_checked_and_recorded(tmp_path):
    """``lam`` names a LAM run directory instead of training one; a directory without lam.json is
    refused in one line, and a resume with another LAM is refused (labels and rows were built on the first)."""
    import hralign_bench.v2 as v2

    with pytest.raises(HRAlignError, match="`lam` .*no lam.json"):
        v2.V2Config(lam=str(tmp_path))
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "cli"), "--set", f"lam={tmp_path}")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "lam" in stderr
    (tmp_path / "lam.json").write_text("{}")
    assert v2.V2Config(lam=str(tmp_path)).lam == str(tmp_path)
    v2.record_choice(tmp_path / "lam_choice.json", {"lam": "a"}, "the LAM")
    v2.record_choice(tmp_path / "lam_choice.json", {"lam": "a"}, "the LAM")  # same choice: resumes
    with pytest.raises(HRAlignError, match="the LAM changed since the run started"):
        v2.record_choice(tmp_path / "lam_choice.json", {"lam": "b"}, "the LAM")


@needs_mw
def test_unknown_task_lists_the_valid_ones(tmp_path):
    with pytest.raises(HRAlignError, match="eval-tasks.*pushh.*sweep-into"):
        TaskSets(pretrain="reach", pair="door-open", eval="pushh").check_known()
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(tmp_path / "v2"), "--pretrain-tasks", "reachh",
                              "--pair-tasks", "door-open", "--eval-tasks", "push")
    assert code == 2 and "--pretrain-tasks" in stderr and "reachh" in stderr and "sweep-into" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "v2").exists()  # refused before any work


@needs_mw
def test_random_look_varies_and_is_undone():
    from hralign.sim.env import SimEnv, seed_rng

    env = SimEnv("push", 32)
    try:
        env.reset(env.sample_goal(seed_rng(0, "push", 0, 0)))
        robot, human = env.render(), env.render(human=True)
        looks = [env.render(human=True, look=env.random_look(seed_rng(5, i))) for i in range(3)]
        again = env.render(human=True, look=env.random_look(seed_rng(5, 0)))
        assert np.array_equal(env.render(), robot) and np.array_equal(env.render(human=True), human)  # restored
    finally:
        env.close()
    assert np.array_equal(looks[0], again)  # seeded
    for a in looks:
        assert not np.array_equal(a, human) and not np.array_equal(a, robot)
    assert not np.array_equal(looks[0], looks[1]) and not np.array_equal(looks[1], looks[2])


@needs_mw
def test_collect_human_only_corpus(tmp_path):
    from hralign.pairs import PairsFile
    from hralign.sim.collect import CollectConfig, collect

    out = tmp_path / "corpus.h5"
    s = collect(out, CollectConfig(tasks="reach", episodes=2, image_size=32, views="human", vary_look=True),
                progress=False)
    pf = PairsFile(out)
    assert pf.num_clips("human") == 2 and pf.num_pairs == 0 and "robot" not in pf.domains
    assert s["renders"] == pf.num_frames("human")
    a, b = pf.read_clip("human", 0)[0], pf.read_clip("human", 1)[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # another look per episode
    with pytest.raises(HRAlignError, match="views"):
        CollectConfig(views="robot")


@needs_mw
def test_bench_v2_tiny_runs_every_stage_and_resumes(tmp_path):
    """The CI configuration of v2: one task per set, 32 px, a few steps per stage - plumbing, not success rates."""
    out = tmp_path / "v2"
    sets = ["--pretrain-tasks", "reach", "--pair-tasks", "door-open", "--eval-tasks", "push"]
    sizes = ["--set", "corpus_episodes=3", "--set", "pair_episodes=3", "--set", "eval_episodes=8",
             "--set", "image_size=32", "--set", "pretrain_steps=2", "--set", "pretrain_eval_every=2",
             "--set", "adapters=lora:middle+frames", "--set", "adapt_steps=2", "--set", "lam_steps=2",
             "--set", "latent_steps=3", "--set", "old_base=true", "--set", "rollouts=2",
             "--set", "seeds=2", "--set", "steps=5", "--set", "max_steps=8", "--set", "envs=2",
             "--set", "bootstrap=100", "--protocols", "robot,transfer", "--workers", "2"]
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), "--pretrain-tasks", "reach",
                              "--pair-tasks", "push", "--eval-tasks", "push")
    assert code == 2 and "overlap on push" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets, "--set", "rollouts=many")
    assert code == 2 and "rollouts" in stderr
    code, stdout, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets, *sizes)
    assert code == 0, stderr
    res = json.loads((out / "results.json").read_text())
    rows = {"proprio-only", "random-init", "frozen", "adapted:lora-middle+frames"}
    chain = {"latent chain", "latent policy without latent pretraining"}
    assert set(res["table"]["robot"]) == rows | chain and set(res["table"]["transfer"]) == rows | {"human-view oracle"}
    # the chain: latent stage on the LAM-labelled human clips, then the robot demos; its control skips the latent stage
    latent = [json.loads((out / "eval" / "robot" / d / v / "seed0.json").read_text())
              for d, v in (("latent-chain", "latent chain"),
                           ("latent-policy-without-latent-pretraining", "latent policy without latent pretraining"))]
    assert latent[0]["latent_final"]["token_acc"] >= 0 and latent[1]["latent_final"] is None  # the control skips it
    assert latent[0]["final_loss"] != latent[1]["final_loss"]  # same seed and init: only the latent stage differs
    assert latent[0]["demo_frames"] == latent[1]["demo_frames"] == json.loads(
        (out / "eval" / "robot" / "frozen" / "frozen" / "seed0.json").read_text())["demo_frames"]  # BC's demos
    lc = res["stats"]["robot"]["latent_chain"]
    assert lc["diff_lo"] <= lc["diff"] <= lc["diff_hi"] and "latent_chain" not in res["stats"]["transfer"]
    assert res["table"]["robot"]["latent chain"]["policy"] == "latent" and res["lam"]["perplexity"] >= 1
    # the spread stage: random-init, the corpus base and the base pretrained on the eval tasks' human views
    assert set(res["spread"]) == {"random-init", "frozen", "base pretrained on eval-task human views"}
    for per_file in res["spread"].values():
        assert set(per_file) == {"eval", "pairs"} and per_file["eval"]["clips"] == 8
        assert per_file["eval"]["tasks"] == 1 and per_file["eval"]["chance"] == 1.0  # one eval task: kNN is trivially 1
        assert per_file["eval"]["knn_r2r"] == 1.0
        # the one probe definition, with its proprio floor: the floor is the same for every encoder
        assert {"action_probe_r2", "action_probe_r2_proprio", "action_probe_r2_with_proprio"} <= set(per_file["eval"])
        assert "probe_r2" not in per_file["eval"]
        assert 1 <= per_file["eval"]["frame_rank"] <= 512
    floors = {round(f["eval"]["action_probe_r2_proprio"], 9) for f in res["spread"].values()}
    assert len(floors) == 1
    boot = res["stats"]["transfer"]["bootstrap"]
    for v, b in boot.items():
        assert b["lo"] <= b["mean"] <= b["hi"] and (v == "frozen" or b["diff_lo"] <= b["diff"] <= b["diff_hi"])
    assert res["stats"]["robot"]["rollouts_per_cell"] == 4  # 2 goals x 2 seeds
    assert {"collect corpus", "collect pairs", "collect eval", "pretrain (corpus)", "eval", "lam (corpus)",
            "lam labels (eval)", "spread (robot clips)"} <= set(res["timings_s"])
    assert res["timings_s"]["eval rollouts/s"] > 0 and res["peak_rss"]["workers_max_mb"] > 0
    assert res["alignment"]["frozen"]["pairs"] >= 2 and res["pretrain_curve"][-1]["step"] == 2
    md = (out / "results.md").read_text()
    assert "human-view oracle" in md and "[" in md and md in stdout + "\n"
    assert "latent chain - latent policy without latent pretraining" in md and "Robot-clip spread" in md
    seed0 = (out / "eval" / "robot" / "frozen" / "frozen" / "seed0.json").read_text()
    assert len(json.loads(seed0)["per_goal"]["push"]) == 2
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets[:4], "--eval-tasks", "sweep-into",
                              *sizes, "--resume")
    assert code == 2 and "eval tasks: added sweep-into; removed push" in stderr
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets, *sizes)
    assert code == 2 and "--resume" in stderr
    code, _, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets, *sizes, "--resume")
    assert code == 0, stderr
    again = json.loads((out / "results.json").read_text())
    def seeds(r):
        return {p: {v: row["per_seed"] for v, row in rows.items()} for p, rows in r["table"].items()}

    assert seeds(again) == seeds(res)  # every (protocol, row, seed) reused, not rerun
    assert again["timings_s"]["pretrain (corpus)"] == res["timings_s"]["pretrain (corpus)"]
    assert (out / "eval" / "robot" / "frozen" / "frozen" / "seed0.json").read_text() == seed0
    # sequential rounds on the same run: the finished goals are reused, a third goal per task is rolled out by
    # each seed's saved policy, and every comparison against frozen says where and why it stopped
    more = [("rollouts=3" if s == "rollouts=2" else s) for s in sizes]
    code, stdout, stderr = run_cli("bench", "metaworld-v2", "--out", str(out), *sets, *more, "--resume",
                                   "--sequential", "--round-size", "1", "--target-half-width", "0.01")
    assert code == 0, stderr
    seq = json.loads((out / "results.json").read_text())["sequential"]
    assert {(c["protocol"], c["row"]) for c in seq["comparisons"]} >= {("robot", "random-init"), ("transfer", "random-init"),
                                                                      ("robot", "latent chain")}
    for c in seq["comparisons"]:
        assert c["stop"] in ("resolved", "precise", "max") and 1 <= c["look"] <= 3 and c["lo"] <= c["hi"]
    frozen_used = {r["protocol"]: r["rollouts"] for r in seq["rollouts"] if r["row"] == "frozen"}
    assert all(n in (2, 4, 6) for n in frozen_used.values())  # 2 seeds x 1 task x the goals of its last look
    assert json.loads(seed0)["per_goal"]["push"] == json.loads(
        (out / "eval" / "robot" / "frozen" / "frozen" / "seed0.json").read_text())["per_goal"]["push"][:2]
    assert "Sequential evaluation" in stdout
