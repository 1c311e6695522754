"""GR-1-style policy: causal mask, chunked execution with temporal ensembling, save/load, exact resume
of both stages, and one-line errors for bad input (CLI exit 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from hralign.errors import HRAlignError
from hralign.policy import EncoderSource, load_policy, save_policy
from hralign.policy.gr1 import GR1Config, GR1Policy, GR1Runner, GR1TrainConfig, TemporalEnsembler, step_mask
from hralign.policy.gr1 import train as gr1_train

pytestmark = pytest.mark.filterwarnings("ignore::hralign.encoders.RandomInitWarning")
ENC = EncoderSource("r3m-resnet18", image_size=32)
SMALL = dict(history=3, chunk=2, future_delta=2, dim=32, layers=2, heads=2, instruction=False)
DIMS = dict(feature_dim=6, action_dim=3, state_dim=2, instruction_dim=5)


def _policy(**kw) -> GR1Policy:
    torch.manual_seed(0)
    cfg = GR1Config(**{**SMALL, "history": 5, "dropout": 0.0, "instruction": True, "gripper_dims": "none", **kw})
    p = GR1Policy(cfg, DIMS)
    actions = torch.randn(50, 3)
    if cfg.gripper_dims != "none":
        actions[:, -1] = (actions[:, -1] > 0).float()
    p.fit_head(actions)
    p.fit_future(torch.randn(50, 6))
    return p.eval()


def _window(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"features": torch.randn(2, n, 6, generator=g), "state": torch.randn(2, n, 2, generator=g),
            "instruction": torch.randn(2, 5, generator=g)}


def test_prediction_at_t_does_not_change_when_later_inputs_change():
    p = _policy()
    a = _window(5)
    for t in range(4):
        b = {k: v.clone() for k, v in a.items()}
        b["features"][:, t + 1:] += 3.0 * torch.randn_like(b["features"][:, t + 1:])
        b["state"][:, t + 1:] -= 2.0
        ca, cb = p.predict_chunks(a), p.predict_chunks(b)
        fa, fb = p.predict_future(a), p.predict_future(b)
        assert torch.allclose(ca[:, :t + 1], cb[:, :t + 1], atol=1e-5)
        assert torch.allclose(fa[:, :t + 1], fb[:, :t + 1], atol=1e-5)
        assert not torch.allclose(ca[:, t + 1], cb[:, t + 1], atol=1e-3)  # the later step does see its inputs
    # the mask itself: query tokens ([OBS], [ACT]) are seen by no other token; nothing sees a later step
    m = step_mask(3, obs_per_step=2, queries_per_step=2)  # per step: obs, obs, [OBS], [ACT]
    allowed = ~m
    assert allowed[5, 4] and allowed[5, 1] and not allowed[5, 2] and not allowed[5, 8]
    assert not allowed[:, 3].clone().index_fill_(0, torch.tensor([3]), False).any()


def test_temporal_ensembler_matches_acts_formula():
    m, k = 0.5, 3
    chunks = [torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[10.0], [20.0], [30.0]]),
              torch.tensor([[100.0], [200.0], [300.0]]), torch.tensor([[7.0], [8.0], [9.0]])]
    ens = TemporalEnsembler(k, m)
    got = [float(ens.step(c)) for c in chunks]
    w = [math.exp(-m * i) for i in range(3)]
    # step 0: only chunk 0's entry 0; step 1: chunk 0 entry 1 (oldest), chunk 1 entry 0; step 2: three; step 3:
    # chunks 1..3 (chunk 0 no longer covers step 3)
    want = [1.0, (w[0] * 2 + w[1] * 10) / (w[0] + w[1]), (w[0] * 3 + w[1] * 20 + w[2] * 100) / sum(w),
            (w[0] * 30 + w[1] * 200 + w[2] * 7) / sum(w)]
    assert got == pytest.approx(want, rel=1e-6)


def test_runner_executes_chunks_with_history_and_ensembling():
    p = _policy(chunk=3, history=2, ensemble_coeff=0.3)
    obs = _window(4, seed=3)
    runner = GR1Runner(p, 2)
    got = [runner.act({"features": obs["features"][:, t], "state": obs["state"][:, t],
                       "instruction": obs["instruction"]}, [0, 1]) for t in range(4)]
    # by hand: chunk made at step s from the history window max(0, s-1)..s, then ACT's weighted mean
    chunks = []
    for s in range(4):
        lo = max(0, s - 1)
        chunks.append(p.select_chunk({"features": obs["features"][:, lo:s + 1], "state": obs["state"][:, lo:s + 1],
                                      "instruction": obs["instruction"]}))  # (2, 3, A)
    for t in range(4):
        made = list(range(max(0, t - 2), t + 1))  # oldest first
        w = torch.tensor([math.exp(-0.3 * i) for i in range(len(made))])
        want = sum(w[i] * chunks[s][:, t - s] for i, s in enumerate(made)) / w.sum()
        assert torch.allclose(got[t], want, atol=1e-5)
    with pytest.raises(HRAlignError, match="larger than the rollout limit"):
        GR1Runner(p, 2, max_steps=2)


def _train(pairs, out, cfg=None, tcfg=None, **kw):
    cfg = cfg or GR1Config(**SMALL)
    tcfg = tcfg or GR1TrainConfig(pretrain_steps=6, steps=6, batch_size=8, log_every=2, checkpoint_every=2)
    return gr1_train.train_gr1(pairs, ENC, out, cfg, tcfg, progress=False, **kw)


def test_stage1_reads_another_files_human_clips(tiny_pairs, small_pairs, tmp_path):
    """--pretrain-pairs: stage 1 reads every human clip of that file (GR-1's video corpus), stage 2 --pairs' robot
    demos; its tasks follow --pairs' in the instruction table; a missing file or stage 1 off is one line."""
    from hralign.pairs import PairsFile

    video = PairsFile(small_pairs)
    tcfg = GR1TrainConfig(pretrain_steps=4, steps=4, batch_size=8, log_every=2, checkpoint_every=2,
                          pretrain_pairs=str(small_pairs))
    summary = _train(tiny_pairs, tmp_path / "g", tcfg=tcfg)
    assert summary["human_pretrain_clips"] == video.num_clips("human") != PairsFile(tiny_pairs).num_clips("human")
    run = json.loads((tmp_path / "g" / "run.json").read_text())
    assert run["config"]["pretrain_pairs_sha256"] and run["config"]["train"]["pretrain_pairs"] == str(small_pairs)
    assert gr1_train.stage_tasks(PairsFile(tiny_pairs), video) == list(PairsFile(tiny_pairs).tasks) + list(video.tasks)
    with pytest.raises(HRAlignError, match="--pretrain-pairs .*nope.h5: no such file"):
        GR1TrainConfig(pretrain_steps=4, pretrain_pairs=str(tmp_path / "nope.h5"))
    with pytest.raises(HRAlignError, match="--pretrain-steps 0 skips"):
        GR1TrainConfig(pretrain_pairs=str(small_pairs))


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    p = _policy(chunk=2, gripper_dims="last")
    with torch.no_grad():
        for q in p.parameters():
            q.add_(0.1 * torch.randn_like(q))
    save_policy(p, tmp_path / "p", {})
    loaded, meta = load_policy(tmp_path / "p")
    assert meta["kind"] == "gr1" and isinstance(loaded, GR1Policy) and loaded.config == p.config
    obs = _window(6, seed=5)
    ra, rb = p.runner(2), loaded.runner(2)
    for t in range(6):
        step = {"features": obs["features"][:, t], "state": obs["state"][:, t], "instruction": obs["instruction"]}
        assert torch.equal(ra.act(step, [0, 1]), rb.act(step, [0, 1]))


def test_two_stages_train_and_policy_eval(tiny_pairs, tmp_path):
    summary = _train(tiny_pairs, tmp_path / "g")
    assert summary["human_pretrain_windows"] > 0 and set(summary["final"]) == {"pretrain", "action"}
    lines = [json.loads(x) for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert all("action_loss" not in x and "future_loss" in x for x in lines if x["stage"] == "pretrain")
    assert all("action_loss" in x for x in lines if x["stage"] == "action")
    code, out, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(tmp_path / "g"), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["kind"] == "gr1" and res["action"]["frames"] == 8 * res["heldout_clips"]["robot"]
    # the robot cosine is GR-1's windowed evaluation of the saved policy on the recorded held-out robot clips
    from hralign.pairs import PairsFile
    from hralign.policy.gr1.train import evaluate_windows, load_clip_data
    from hralign.policy.io import recorded_source

    policy, meta = load_policy(tmp_path / "g")
    held = np.asarray(meta["data"]["heldout_clips"]["robot"], dtype=np.int64)
    data = load_clip_data(PairsFile(tiny_pairs), "robot", recorded_source(meta, None, "t").robot_encoder(), held,
                          actions=True, state=policy.config.proprio)
    want = evaluate_windows(policy, data, held, None)
    assert res["future_cosine"]["robot"] == pytest.approx(want["future_cosine"], rel=1e-5)
    assert res["action"]["mse_mean"] == pytest.approx(want["action"]["mse_mean"], rel=1e-5)
    assert res["future_cosine"]["human"] != pytest.approx(res["future_cosine"]["robot"])  # other clips, other encoder


def test_resume_is_exact_in_both_stages(tiny_pairs, tmp_path, monkeypatch):
    cfg = GR1Config(**SMALL, dropout=0.2)  # dropout draws from torch's RNG: the checkpoint must carry it
    _train(tiny_pairs, tmp_path / "full", cfg)
    real = gr1_train.gr1_forward
    for stop in (5, 10):  # interrupted in stage 1 (after its step-4 checkpoint), then in stage 2
        calls = {"n": 0}

        def flaky(policy, batch, mean=None, stop=stop, calls=calls):
            calls["n"] += 1
            if calls["n"] == stop:
                raise KeyboardInterrupt
            return real(policy, batch, mean)

        monkeypatch.setattr(gr1_train, "gr1_forward", flaky)
        with pytest.raises(KeyboardInterrupt):
            _train(tiny_pairs, tmp_path / f"part{stop}", cfg)
        ck = gr1_train.load_checkpoint(tmp_path / f"part{stop}")
        assert (ck["stage"], ck["step"]) == (("pretrain", 4) if stop == 5 else ("action", 2))
        monkeypatch.setattr(gr1_train, "gr1_forward", real)
        _train(tiny_pairs, tmp_path / f"part{stop}", cfg, resume=True)
        a = load_file(str(tmp_path / "full" / "model.safetensors"))
        b = load_file(str(tmp_path / f"part{stop}" / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(HRAlignError, match="was run with --dim 32, this call passes 16"):
        _train(tiny_pairs, tmp_path / "full", GR1Config(**{**SMALL, "dim": 16}), resume=True)


def test_bad_input_is_one_line_exit_2(tiny_pairs, tmp_path):
    code, _, err = run_cli("policy", "train", "--kind", "gr1", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                           "--image-size", "32", "--history", "9", "--out", str(tmp_path / "h"))
    assert code == 2 and "--history 9" in err and "only 8 frames" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                           "--chunk", "3", "--out", str(tmp_path / "c"))
    assert code == 2 and "--chunk only apply to --kind gr1" in err
    code, _, err = run_cli("sim", "eval", "--kind", "gr1", "--chunk", "30", "--max-steps", "20",
                           "--pairs", str(tiny_pairs), "--out", str(tmp_path / "s"))
    assert code == 2 and "`chunk` 30 is larger than the rollout limit of 20" in err and len(err.strip().splitlines()) == 1
    # `sim eval --policy` was the kind's old name: refused, naming --kind (one name in every command)
    code, _, err = run_cli("sim", "eval", "--policy", "gr1", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "s"))
    assert code == 2 and "pass --kind gr1" in err and len(err.strip().splitlines()) == 1
    # a policy directory of another kind given to `policy eval`
    other = tmp_path / "act"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"hralign_format": "policy", "hralign_version": 1, "kind": "act",
                                                   "config": {}, "dims": {}}))
    code, _, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(other))
    assert code == 2 and "policy kind 'act' unknown; known: bc, latent, gr1" in err and len(err.strip().splitlines()) == 1
    (other / "config.json").write_text(json.dumps({"hralign_format": "lam", "hralign_version": 1}))
    code, _, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(other))
    assert code == 2 and "`hralign_format` is 'lam', expected 'policy'" in err
    with pytest.raises(HRAlignError, match="`heads` should divide `dim`"):
        GR1Config(dim=30, heads=4)
    with pytest.raises(HRAlignError, match="steps of history"):
        _policy(history=2).select_chunk(_window(3))


def test_cli_resume_takes_the_runs_options_and_refuses_a_changed_one(tiny_pairs, tmp_path):
    # `--resume` needs only the required options and the longer --steps: the rest (--kind gr1, the
    # model, the recipe, the encoder's --image-size) come from run.json, as for the other trainers
    base = ["policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18"]
    recipe = ["--kind", "gr1", "--image-size", "32", "--history", "3", "--dim", "16", "--heads", "2", "--no-instruction",
              "--pretrain-steps", "2", "--batch-size", "8", "--lr", "1e-3", "--log-every", "1", "--no-progress",
              "--device", "cpu"]
    assert run_cli(*base, *recipe, "--steps", "2", "--out", str(tmp_path / "part"))[0] == 0
    code, _, err = run_cli(*base, "--out", str(tmp_path / "part"), "--resume", "--steps", "4", "--no-progress")
    assert code == 0, err
    assert run_cli(*base, *recipe, "--steps", "4", "--out", str(tmp_path / "full"))[0] == 0
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == (tmp_path / "part" / "metrics.jsonl").read_text()
    run = json.loads((tmp_path / "part" / "run.json").read_text())
    assert run["kind"] == "gr1" and run["config"]["config"]["dim"] == 16 and run["config"]["train"]["steps"] == 4
    # a changed non-resumable option is refused, naming it; nothing is written
    before = {p.name: p.read_bytes() for p in (tmp_path / "part").iterdir() if p.is_file()}
    code, _, err = run_cli(*base, "--out", str(tmp_path / "part"), "--resume", "--steps", "6", "--dim", "32")
    assert code == 2 and "was run with --dim 16, this call passes 32" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "part").iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------- fitting its demonstrations
def _two_demos(seed: int = 0, frames: int = 24, dim: int = 16) -> "gr1_train.ClipData":
    """Two demos whose actions are a smooth function of the features, which come at per-dim scales 1e-2..1e2
    on a large offset (as a frozen encoder's raw features do): the case the input standardisation is for."""
    import numpy as np

    g = torch.Generator().manual_seed(seed)
    scale, offset = torch.logspace(-2, 2, dim), 50 * torch.rand(dim, generator=g)
    w = torch.randn(dim, 3, generator=g) / dim ** 0.5
    data = gr1_train.ClipData("robot", {}, np.zeros(2, dtype=np.int64))
    for c in range(2):
        z = torch.randn(frames, dim, generator=g)
        data.features[c] = (z * scale + offset)[:, None, :]
        data.state[c] = torch.randn(frames, 2, generator=g)
        data.actions[c] = torch.tanh(z @ w)
    return data


def _fit(data, tmp_path, steps: int, **cfg_kw) -> tuple[GR1Policy, float]:
    """Train on every window of ``data`` with the library's recipe; (policy, eval-mode action MSE on its frames)."""
    import numpy as np

    from hralign.train import open_session

    cfg = GR1Config(**{"history": 4, "dim": 32, "layers": 2, "heads": 2, "instruction": False, "gripper_dims": "none",
                       **cfg_kw})
    clips = np.arange(2)
    torch.manual_seed(0)
    p = GR1Policy(cfg, {"feature_dim": data.features[0].shape[-1], "action_dim": 3, "state_dim": 2})
    p.fit_head(torch.cat(list(data.actions.values())))
    p.fit_future(torch.cat([f[:, 0] for f in data.features.values()]))
    p.fit_inputs(torch.cat([f[:, 0] for f in data.features.values()]), torch.cat(list(data.state.values())))
    train = GR1TrainConfig(steps=steps, batch_size=16, log_every=steps, checkpoint_every=0, device="cpu",
                           overwrite=True)
    session = open_session(train, tmp_path / "run", "gr1-test", {})
    session.begin()
    gr1_train.run_stages(p, [("action", steps, data, gr1_train.windows(data, clips, cfg.history))], train, None,
                         session, progress=False)
    session.finish()
    mse = gr1_train.evaluate_windows(p, data, clips, None)["action"]["mse_mean"]
    return p, mse


FIT_STEPS = 600  # the bound: GR1TrainConfig's recipe (100 warm-up steps, cosine to 0 at this step)


@pytest.fixture(scope="module")
def fitted_two_demos(tmp_path_factory):
    """(demos, the actions' variance, eval-mode action MSE of the default GR-1 after FIT_STEPS on them)."""
    data = _two_demos()
    _, mse = _fit(data, tmp_path_factory.mktemp("fit"), FIT_STEPS)
    return data, float(torch.cat(list(data.actions.values())).var(0).mean()), mse


def test_tiny_gr1_overfits_two_demos(fitted_two_demos):
    _, var, mse = fitted_two_demos
    assert mse < 0.01 * var, (mse, var)  # near zero: under 1% of the actions' variance


def test_without_input_standardisation_the_same_recipe_fits_far_worse(fitted_two_demos, tmp_path):
    data, _, mse = fitted_two_demos
    _, raw = _fit(data, tmp_path, FIT_STEPS, normalize_inputs=False)
    assert raw > 3 * mse, (raw, mse)  # measured 0.0064 vs 0.0013


def test_input_standardisation_makes_the_policy_blind_to_per_dim_scale(tmp_path):
    # fitted to features X, or to X * s + o with the same init, the policy gives the same actions
    torch.manual_seed(1)
    x, st = torch.randn(40, 6), torch.randn(40, 2)
    s, o = torch.logspace(-2, 2, 6), torch.linspace(-10, 10, 6)  # (scales above the std floor, 1e-4 x overall std)
    pa, pb = _policy(), _policy()
    pa.fit_inputs(x, st)
    pb.fit_inputs(x * s + o, st * 10 - 3)
    w = _window(4, seed=2)
    w["features"], w["state"] = x[:8].view(2, 4, 6), st[:8].view(2, 4, 2)
    wb = {**w, "features": w["features"] * s + o, "state": w["state"] * 10 - 3}
    assert torch.allclose(pa.predict_chunks(w), pb.predict_chunks(wb), atol=1e-4)
    assert not torch.allclose(pa.predict_chunks(w), pa.predict_chunks(wb), atol=1e-2)  # pa itself does see the scale
    # a policy directory saved before the option existed keeps its raw inputs (and its state dict)
    old = {k: v for k, v in GR1Config().to_dict().items() if k != "normalize_inputs"}
    assert GR1Config.from_dict(old).normalize_inputs is False and GR1Config().normalize_inputs is True
    assert "feature_mean" not in GR1Policy(GR1Config.from_dict(old), DIMS).state_dict()
