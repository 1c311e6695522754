"""hralign sim: MetaWorld collect + closed-loop eval (tiny CI configuration), configs and bad input.

The MetaWorld tests are skipped, with the reason, where the [sim] extra is not importable.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.sim.collect import CollectConfig
from hralign.sim.env import metaworld_available
from hralign.sim.evaluate import SimEvalConfig, demo_clips

_OK, _WHY = metaworld_available()
needs_mw = pytest.mark.skipif(not _OK, reason=f"[sim] extra not usable: {_WHY}")

TINY = ["--tasks", "push", "--episodes", "2", "--image-size", "32", "--max-steps", "150"]


@pytest.fixture(scope="module")
def mw_pairs(tmp_path_factory):
    if not _OK:
        pytest.skip(f"[sim] extra not usable: {_WHY}")
    out = tmp_path_factory.mktemp("sim") / "mw.h5"
    code, stdout, stderr = run_cli("sim", "collect", *TINY, "--out", str(out), "--json")
    assert code == 0, stderr
    return out, json.loads(stdout)


def test_configs_reject_bad_values():
    with pytest.raises(HRAlignError, match="episodes"):
        CollectConfig(episodes=0)
    with pytest.raises(HRAlignError, match="tasks"):
        CollectConfig(tasks=" , ")
    with pytest.raises(HRAlignError, match="noise"):
        CollectConfig(noise=2.0)
    with pytest.raises(HRAlignError, match="protocol"):
        SimEvalConfig(protocol="zero-shot")
    with pytest.raises(HRAlignError, match="rollouts"):
        SimEvalConfig(rollouts=0)
    with pytest.raises(HRAlignError, match="`lr`"):
        SimEvalConfig(lr=0.0)
    assert CollectConfig(tasks="push, pick-place").tasks == ("push", "pick-place")
    with pytest.raises(HRAlignError, match="policy kind 'act' unknown; known: bc, latent, gr1"):
        SimEvalConfig(kind="act")


def test_sim_eval_config_reads_results_written_with_the_old_policy_key():
    old = {**SimEvalConfig().to_dict(), "kind": None}
    del old["kind"]
    old["policy"] = "gr1"  # results.json of an evaluation run before `kind` was the name
    assert SimEvalConfig.from_dict(old).kind == "gr1"
    assert SimEvalConfig.from_dict(SimEvalConfig(kind="gr1").to_dict()) == SimEvalConfig(kind="gr1")


def test_bench_adapter_specs_and_row_names():
    from hralign_bench.v1 import BenchConfig, adapter_row

    assert [adapter_row(s) for s in ("full", "lora:middle", "bottleneck:late+frames", "full+frames")] == [
        "full fine-tune", "adapted:lora-middle", "adapted:bottleneck-late+frames", "full fine-tune+frames"]
    for bad in ("lora:middle+pixels", "nonsense:late", "lora+frames,lora+frames", "lora+mmd=-1", "lora++frames",
                "lora+frames+frames", "lora+mmd=x"):
        with pytest.raises(HRAlignError, match="adapters"):
            BenchConfig(adapters=bad)
    with pytest.raises(HRAlignError, match="adapt_frame_weight"):
        BenchConfig(adapt_frame_weight=0.0)


def test_adapter_spec_terms_reach_hralign_adapt(tiny_pairs, tmp_path, monkeypatch):
    """``+TERM[=WEIGHT]`` suffixes become `hralign adapt --terms` (weight 1 when none is given)."""
    import hralign.align.trainer as trainer
    from hralign_bench.stages import adapt_stage, adapter_row, adapter_terms

    assert adapter_row("lora:middle+frames+mmd=10") == "adapted:lora-middle+frames+mmd=10"
    assert adapter_terms("lora:middle+frames+mmd=10+softdtw") == "mmd=10,softdtw=1"
    assert adapter_terms("full+frames") == ""
    seen = []
    monkeypatch.setattr(trainer, "run_adapt", lambda cfg, **_kw: seen.append(cfg))
    run = adapt_stage(tmp_path, tiny_pairs, "lora:middle+sinkhorn=0.5", "r3m-resnet18", None, 64, 2, 1e-3, 1.0, 0,
                      False)
    assert run == tmp_path / "adapt" / "lora-middle+sinkhorn=0.5" / "adapter"
    assert (seen[0].terms, seen[0].frame_weight, seen[0].method) == ("sinkhorn=0.5", 0.0, "lora")


def test_frame_error_is_zero_for_identical_frames_and_skips_unaligned_pairs():
    from hralign.metrics import frame_error

    rng = np.random.default_rng(0)
    h = [rng.standard_normal((4, 3)), rng.standard_normal((5, 3))]
    assert frame_error(h, [x.copy() for x in h]) == 0.0
    # relative to the spread of the human frames: the mean human frame scores 1, a constant shift scales in
    mean = np.concatenate(h).mean(0)
    assert frame_error(h, [np.broadcast_to(mean, x.shape) for x in h]) == pytest.approx(1.0)
    assert frame_error(h, [x + 10 for x in h]) > 100
    # the second pair has another length (not frame-aligned): only the first counts
    assert frame_error(h, [h[0].copy(), np.zeros((6, 3))]) == 0.0
    assert np.isnan(frame_error(h[:1], [np.zeros((2, 3))]))


def test_demo_clips_per_protocol(tiny_pairs):
    from hralign.pairs import PairsFile

    pf = PairsFile(tiny_pairs)  # 4 tasks x 3 pairs
    assert set(demo_clips(pf, "transfer", 2, 0)) == {"human"}
    assert set(demo_clips(pf, "robot", 2, 0)) == {"robot"}
    few = demo_clips(pf, "few-shot", 2, 0)
    assert len(few["human"]) == pf.num_clips("human")
    tasks = pf.clip_tasks("robot")[few["robot"]]
    assert sorted(np.bincount(tasks).tolist()) == [2, 2, 2, 2]  # two robot demos per task
    assert not np.array_equal(few["robot"], demo_clips(pf, "few-shot", 2, 1)["robot"]) or \
        not np.array_equal(few["robot"], demo_clips(pf, "few-shot", 2, 2)["robot"])  # seeded choice varies


def test_bc_demo_mse_is_the_eval_mode_action_error_on_the_demo_frames():
    import torch

    from hralign.policy import BCConfig, BCPolicy
    from hralign.sim.evaluate import bc_demo_mse

    torch.manual_seed(0)
    table = {"features": torch.randn(40, 6), "state": torch.randn(40, 3), "action": torch.randn(40, 2)}
    policy = BCPolicy(BCConfig(head="bc", proprio=True), 6, 2, 3)
    policy.fit_head(table["action"])
    policy.train()
    got = bc_demo_mse(policy, table)
    assert policy.training  # mode restored
    policy.eval()
    with torch.no_grad():
        want = float(((policy.select_action(table) - table["action"]) ** 2).mean())
    assert got == pytest.approx(want, rel=1e-6) and got > 0
    with torch.no_grad():  # a perfect fit: the head returns the recorded actions -> 0
        assert bc_demo_mse(policy, {**table, "action": policy.select_action(table)}) == pytest.approx(0.0, abs=1e-10)


def test_gr1_demo_mse_uses_the_history_up_to_each_frame(tiny_pairs):
    import torch

    from hralign.pairs import PairsFile
    from hralign.policy.gr1 import GR1Config, GR1Policy
    from hralign.sim.gr1 import gr1_demo_mse

    pairs = PairsFile(tiny_pairs)
    clips = {"robot": np.array([0, 2])}
    g = torch.Generator().manual_seed(0)
    feats = {"robot": {int(c): torch.randn(pairs.clip_lengths("robot")[c], 5, generator=g) for c in clips["robot"]}}
    acts = {int(c): torch.from_numpy(np.asarray(pairs.read_clip("robot", int(c), name="actions"), np.float32))
            for c in clips["robot"]}
    states = {int(c): torch.from_numpy(np.asarray(pairs.read_clip("robot", int(c), name="state"), np.float32))
              for c in clips["robot"]}
    torch.manual_seed(0)
    cfg = GR1Config(history=3, chunk=2, dim=16, layers=1, heads=2, dropout=0.0, instruction=False, gripper_dims="none")
    a_dim, s_dim = next(iter(acts.values())).shape[1], next(iter(states.values())).shape[1]
    policy = GR1Policy(cfg, {"feature_dim": 5, "action_dim": a_dim, "state_dim": s_dim}).eval()
    policy.fit_head(torch.cat(list(acts.values())))
    policy.fit_future(torch.cat(list(feats["robot"].values())))
    errs = []
    for c in clips["robot"]:  # by hand: the first action of the chunk at t from the frames max(0, t-H+1)..t
        f, st, a = feats["robot"][int(c)], states[int(c)], acts[int(c)]
        for t in range(len(a)):
            s = max(0, t - cfg.history + 1)
            pred = policy.select_action({"features": f[None, s:t + 1], "state": st[None, s:t + 1]})[0]
            errs.append((pred - a[t]) ** 2)
    want = float(torch.stack(errs).mean())
    assert gr1_demo_mse(policy, pairs, feats, clips, None) == pytest.approx(want, rel=1e-5)


def test_eval_refuses_a_file_not_from_sim_collect(tiny_pairs, tmp_path):
    code, _, stderr = run_cli("sim", "eval", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "ev"))
    assert code == 2
    assert "hralign_sim" in stderr and "Traceback" not in stderr


@needs_mw
def test_unknown_task_and_camera_exit_2(tmp_path):
    code, _, stderr = run_cli("sim", "collect", "--tasks", "pushh", "--episodes", "1", "--out", str(tmp_path / "a.h5"))
    assert code == 2 and "pushh" in stderr and "pick-place" in stderr
    code, _, stderr = run_cli("sim", "collect", "--tasks", "push", "--episodes", "1", "--human-camera", "nocam",
                              "--out", str(tmp_path / "b.h5"))
    assert code == 2 and "nocam" in stderr and "corner" in stderr
    assert not (tmp_path / "b.h5").exists()


@needs_mw
def test_collect_writes_frame_aligned_pairs(mw_pairs):
    from hralign.pairs import PairsFile
    from hralign.pairs.validate import validate
    from hralign.sim.collect import read_sim_meta

    path, summary = mw_pairs
    assert validate(path) == []
    pf = PairsFile(path)
    assert pf.num_pairs == 2 and pf.tasks == ["push the puck to the goal"]
    assert pf.frame_shape("robot") == (32, 32, 3) == pf.frame_shape("human")
    meta = read_sim_meta(path)
    assert [c["task"] for c in meta["clips"]] == ["push", "push"]
    for h, r in pf.pairs:
        rob, hum = pf.read_clip("robot", int(r)), pf.read_clip("human", int(h))
        assert rob.shape == hum.shape  # frame-aligned: one human frame per robot frame
        assert rob.std() > 5 and hum.std() > 5  # not the constant (black) frames of a second rendering env
        diff = np.abs(rob.astype(int) - hum.astype(int)).mean(-1)
        assert (diff > 30).mean() > 0.05  # re-skinned arm and table change a good part of the image
        np.testing.assert_array_equal(pf.read_clip("robot", int(r), name="actions"),
                                      pf.read_clip("human", int(h), name="actions"))
        np.testing.assert_array_equal(pf.read_clip("robot", int(r), name="state"),
                                      pf.read_clip("human", int(h), name="state"))
        acts = pf.read_clip("robot", int(r), name="actions")
        assert acts.shape == (len(rob), 4) and np.abs(acts).max() <= 1.0
        assert not np.allclose(rob[0], rob[-1])  # the arm moved during the episode
    goals = [tuple(c["goal"]) for c in meta["clips"]]
    assert goals[0] != goals[1]
    assert summary["renders"] == 2 * pf.num_frames("robot")


@needs_mw
def test_collect_is_deterministic(mw_pairs, tmp_path):
    from hralign.sim.collect import content_hash

    path, summary = mw_pairs
    code, stdout, stderr = run_cli("sim", "collect", *TINY, "--out", str(tmp_path / "again.h5"), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["content_sha256"] == summary["content_sha256"] == content_hash(path)
    code, stdout, stderr = run_cli("sim", "collect", *TINY, "--seed", "1", "--out", str(tmp_path / "other.h5"), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["content_sha256"] != summary["content_sha256"]


@needs_mw
def test_goal_sampling_is_seeded():
    from hralign.sim.env import SimEnv, seed_rng

    env = SimEnv("push", 32)
    try:
        a = env.sample_goal(seed_rng(3, "x"))
        b = env.sample_goal(seed_rng(3, "x"))
        c = env.sample_goal(seed_rng(4, "x"))
    finally:
        env.close()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@needs_mw
@needs_mw
def test_two_task_envs_render_their_own_frames():
    """Each env's GL context is made current before it renders (else the second env corrupts the first)."""
    from hralign.sim.env import SimEnv, seed_rng

    a, b = SimEnv("drawer-open", 32), SimEnv("button-press-topdown", 32)
    try:
        for e in (a, b):
            e.reset(e.sample_goal(seed_rng(1, e.name, 0, 0)))
        first_a = a.render()
        first_b = b.render()
        assert np.array_equal(a.render(), first_a) and np.array_equal(b.render(), first_b)
        assert np.array_equal(a.render(human=True), a.render(human=True))
    finally:
        a.close()
        b.close()


def test_eval_tiny_transfer_and_resume(mw_pairs, tmp_path):
    path, _ = mw_pairs
    out = tmp_path / "ev"
    args = ["sim", "eval", "--pairs", str(path), "--encoder", "r3m-resnet18", "--name", "frozen",
            "--protocol", "transfer", "--rollouts", "1", "--seeds", "1", "--steps", "20", "--batch-size", "32",
            "--max-steps", "15", "--out", str(out)]
    code, stdout, stderr = run_cli(*args, "--json")
    assert code == 0, stderr
    res = json.loads(stdout)
    assert set(res["variants"]) == {"proprio-only", "frozen"}
    from hralign.pairs import PairsFile

    human_frames = PairsFile(path).num_frames("human")
    for row in res["variants"].values():
        (seed,) = row["per_seed"]
        assert seed["per_task"].keys() == {"push"} and len(seed["per_goal"]["push"]) == 1  # --rollouts 1
        assert seed["success"] == seed["per_goal"]["push"][0] and row["mean"] == pytest.approx(seed["success"])
        assert seed["demo_clips"] == {"human": 2} and seed["demo_frames"] == human_frames  # transfer: human demos only
        assert np.isfinite(seed["final_loss"]) and seed["demo_mse"] > 0  # 20 steps do not fit the demos exactly
    assert json.loads((out / "results.json").read_text())["variants"].keys() == res["variants"].keys()
    before = (out / "frozen" / "seed0.json").read_text()
    code, stdout, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    assert (out / "frozen" / "seed0.json").read_text() == before  # resumed: the finished seed was not redone
    assert all(row["resumed_seeds"] == 0 for row in res["variants"].values())
    resumed = json.loads((out / "results.json").read_text())["variants"]
    assert all(row["resumed_seeds"] == 1 for row in resumed.values())  # read back, so not counted in rates
    assert "frozen" in stdout and "+-" in stdout


def test_eval_gr1_stage1_on_another_files_video(mw_pairs, tiny_pairs, tmp_path):
    """sim eval --kind gr1 --pretrain-pairs: stage 1 on that file's human clips (none of --pairs' are encoded for
    it), stage 2 on the protocol's robot demos; a bad --pretrain-pairs is one line, exit 2, before any work."""
    path, _ = mw_pairs
    args = ["sim", "eval", "--pairs", str(path), "--encoder", "r3m-resnet18", "--encoder-image-size", "32", "--name",
            "gr1", "--no-proprio-row", "--kind", "gr1", "--history", "3", "--chunk", "2", "--dim", "32", "--heads", "2",
            "--steps", "4", "--batch-size", "12", "--protocol", "robot", "--rollouts", "1", "--seeds", "1",
            "--max-steps", "8"]
    code, stdout, stderr = run_cli(*args, "--pretrain-steps", "4", "--pretrain-pairs", str(tiny_pairs),
                                   "--out", str(tmp_path / "g"), "--json")
    assert code == 0, stderr
    row = json.loads(stdout)["variants"]["gr1"]
    assert row["options"] == {"pretrain_steps": 4, "pretrain_pairs": str(tiny_pairs)}
    (seed,) = row["per_seed"]
    assert set(seed["demo_clips"]) == {"robot"} and seed["pretrain_final"]["future_loss"] > 0
    for bad, want in ((["--pretrain-steps", "4", "--pretrain-pairs", str(tmp_path / "nope.h5")], "no such file"),
                      (["--pretrain-pairs", str(tiny_pairs)], "--pretrain-steps 0 skips")):
        code, _, stderr = run_cli(*args, *bad, "--out", str(tmp_path / "bad"))
        assert code == 2 and want in stderr and len(stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_eval_tiny_gr1_with_stage1_runs_closed_loop(mw_pairs, tmp_path):
    path, _ = mw_pairs
    out = tmp_path / "gr1"
    code, stdout, stderr = run_cli("sim", "eval", "--pairs", str(path), "--encoder", "r3m-resnet18",
                                   "--encoder-image-size", "32", "--name", "gr1", "--no-proprio-row", "--kind", "gr1",
                                   "--history", "3", "--chunk", "2", "--dim", "32", "--heads", "2",
                                   "--pretrain-steps", "4", "--steps", "4", "--batch-size", "12", "--protocol", "few-shot",
                                   "--few-shot", "1", "--rollouts", "1", "--seeds", "1", "--max-steps", "8",
                                   "--lr", "2e-3", "--out", str(out), "--json")
    assert code == 0, stderr
    row = json.loads(stdout)["variants"]["gr1"]
    assert row["kind"] == "gr1" and row["options"] == {"pretrain_steps": 4} and row["config"]["chunk"] == 2
    assert row["config"]["gripper_dims"] == "none"  # the kind's closed-loop default: MetaWorld's gripper is in [-1, 1]
    (seed,) = row["per_seed"]
    assert seed["demo_clips"] == {"human": 2, "robot": 1} and len(seed["per_goal"]["push"]) == 1
    assert seed["success"] == seed["per_goal"]["push"][0] and row["mean"] == pytest.approx(seed["success"])
    assert np.isfinite(seed["demo_mse"]) and seed["demo_mse"] > 0  # 4 steps do not fit the demos exactly
    stages = [json.loads(x)["stage"] for x in (out / "gr1" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert "pretrain" in stages and stages[-1] == "action"
    lines = [json.loads(x) for x in (out / "gr1" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    for stage in ("pretrain", "action"):  # --lr reaches both stages, through GR-1's 100-step linear warm-up
        lrs = sorted(x["lr"] for x in lines if x["stage"] == stage)
        assert lrs == pytest.approx([2e-3 * k / 100 for k in range(4)])


@needs_mw
def test_bench_metaworld_tiny_runs_every_stage_and_resumes(tmp_path):
    """The CI configuration: 1 task, 8 episodes, a few steps per stage, 1 rollout - plumbing, not success rates."""
    out = tmp_path / "bench"
    code, _, stderr = run_cli("bench", "metaworld", "--out", str(out), "--protocols", "robot,bogus")
    assert code == 2 and "bogus" in stderr
    args = ["bench", "metaworld", "--out", str(out), "--tasks", "push", "--episodes", "8", "--image-size", "32",
            "--pretrain-steps", "4", "--adapters", "bottleneck:late,full+frames", "--adapt-steps", "3",
            "--protocols", "robot,transfer", "--rollouts", "1", "--seeds", "2", "--steps", "10", "--max-steps", "10"]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    res = json.loads((out / "results.json").read_text())
    rows = {"proprio-only", "random-init", "frozen", "adapted:bottleneck-late", "full fine-tune+frames"}
    assert list(res["table"]) == ["robot", "transfer"] and set(res["table"]["robot"]) == rows
    assert (out / "pretrain" / "hralign.json").is_file() and (out / "adapt" / "full-fine-tune+frames" / "adapter").is_dir()
    assert {"collect", "pretrain (human views)", "adapt full+frames", "eval robot", "eval transfer"} <= set(res["timings_s"])
    md = (out / "results.md").read_text()
    assert "| full fine-tune+frames |" in md and "Difference to frozen" in md and "wall time" in md and md in stdout + "\n"
    assert (out / "results.png").stat().st_size > 1000
    m = res["alignment"]["adapted:bottleneck-late"]
    assert (m["val"]["pairs"], m["train"]["pairs"]) == (2, 6) and "proprio-only" not in res["alignment"]
    assert m["val"]["frame_error"] > 0 and "frame error" in md  # frame-aligned pairs: defined
    stamp = (out / "adapt" / "full-fine-tune+frames" / "adapter" / "hralign.json").read_text()
    cfg = json.loads((out / "adapt" / "full-fine-tune+frames" / "run.json").read_text())["config"]
    assert cfg["frame_weight"] == 1.0 and cfg["method"] == "full"
    code, _, stderr = run_cli(*args, "--resume")  # every stage is found finished and reused
    assert code == 0, stderr
    again = json.loads((out / "results.json").read_text())
    assert again["collect"]["reused"] and again["table"] == res["table"]
    for stage in ("pretrain (human views)", "adapt full+frames", "eval robot"):  # what the stages cost when they ran
        assert again["timings_s"][stage] == res["timings_s"][stage]
    assert (out / "adapt" / "full-fine-tune+frames" / "adapter" / "hralign.json").read_text() == stamp


def test_sim_eval_kind_inputs_are_checked_before_any_work(tiny_pairs, tmp_path):
    code, _, err = run_cli("sim", "eval", "--kind", "latent", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "a"))
    assert code == 2 and "--kind latent trains on LAM labels: pass --labels" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("sim", "eval", "--labels", str(tmp_path / "l.h5"), "--pairs", str(tiny_pairs),
                           "--out", str(tmp_path / "b"))
    assert code == 2 and "--labels train --kind latent; drop them for --kind bc" in err
    code, _, err = run_cli("sim", "eval", "--kind", "bc", "--history", "3", "--pairs", str(tiny_pairs),
                           "--out", str(tmp_path / "c"))
    assert code == 2 and "--history only apply to --kind gr1" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
