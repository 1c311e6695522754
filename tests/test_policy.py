"""Policies: action heads, BC (R3M protocol), latent policy on LAM-format labels, CLI errors, resume."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile, PairsWriter
from hralign.policy import (
    BCConfig,
    BinnedHead,
    ContinuousHead,
    EncoderSource,
    LatentPolicyConfig,
    MSEHead,
    TokenLabels,
    TrainConfig,
    build_head,
    evaluate_policy,
    load_policy,
    train_policy,
)

pytestmark = pytest.mark.filterwarnings("ignore::hralign.encoders.RandomInitWarning")
ENC = EncoderSource("r3m-resnet18", image_size=32)
FAST = dict(steps=60, latent_steps=60, batch_size=64, log_every=20, checkpoint_every=30)


# --------------------------------------------------------------------------------------- heads
def test_binned_head_roundtrips_few_distinct_values_and_maps_to_quantile_bins():
    torch.manual_seed(0)
    a = torch.stack([torch.randn(500), (torch.rand(500) > 0.5).float(), torch.randint(0, 5, (500,)).float()], 1)
    head = BinnedHead(8, 3, num_bins=16).fit(a)
    bins = head.bin(a)
    assert bins.min() >= 0 and bins.max() < 16
    # the continuous dim fills every bin roughly equally (quantile edges)
    counts = torch.bincount(bins[:, 0], minlength=16)
    assert counts.min() >= 500 / 16 * 0.6 and counts.max() <= 500 / 16 * 1.4
    # perfect logits decode to bin centres: exact for discrete dims, within the bin for the continuous one
    logits = torch.nn.functional.one_hot(bins, 16).float().view(500, -1) * 10
    dec = head.decode(logits)
    assert torch.equal(dec[:, 1:], a[:, 1:])
    width = (head.edges[0, 1:] - head.edges[0, :-1]).max()
    assert (dec[1:, 0] - a[1:, 0]).abs().median() < width
    loss, logs = head.loss(logits, a)
    assert logs["bin_acc"] == 1.0 and loss < 0.01


def test_continuous_head_standardises_arm_and_uses_bce_on_gripper():
    a = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 1.0], [0.2, 3.0, 1.0]])
    head = ContinuousHead(4, 3, gripper_dims=[2]).fit(a)
    raw = torch.tensor([[0.0, 0.0, -3.0], [1.0, -1.0, 2.0]])
    dec = head.decode(raw)
    assert torch.allclose(dec[0, :2], a[:, :2].mean(0))
    assert dec[:, 2].tolist() == [0.0, 1.0]
    _, logs = head.loss(raw, a[:2])
    assert set(logs) == {"smooth_l1", "bce"}
    with pytest.raises(HRAlignError, match="gripper dims"):
        ContinuousHead(4, 2, gripper_dims=[1]).fit(torch.tensor([[0.0, -1.0], [0.0, 1.0]]))


def test_head_registry_lists_known_names():
    with pytest.raises(HRAlignError, match="known: bc, binned, continuous"):
        build_head("nope", 4, 2)
    assert isinstance(build_head("bc", 4, 2), MSEHead)


# --------------------------------------------------------------------------------------- BC
def test_bc_trains_saves_loads_and_is_repeatable(tiny_pairs, tmp_path):
    cfg = BCConfig(head="bc")
    r1 = train_policy(tiny_pairs, ENC, tmp_path / "a", cfg, TrainConfig(**FAST), progress=False)
    train_policy(tiny_pairs, ENC, tmp_path / "b", cfg, TrainConfig(**FAST), progress=False)
    wa, wb = load_file(str(tmp_path / "a/model.safetensors")), load_file(str(tmp_path / "b/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    lines = [json.loads(x) for x in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["mse"] < lines[0]["mse"]  # the loss goes down
    meta = json.loads((tmp_path / "a/config.json").read_text())
    assert meta["dims"]["feature_dim"] == 512 and meta["encoder"]["name"] == "r3m-resnet18"
    assert r1["robot_action_clips"] == meta["counts"]["robot_action_clips"]
    policy, _ = load_policy(tmp_path / "a")
    res = evaluate_policy(tmp_path / "a", tiny_pairs)
    held = set(meta["data"]["heldout_clips"]["robot"])
    assert res["action"]["clips"] == len(held) > 0
    assert not held & set(meta["data"]["robot_action_clips"])  # held-out clips never trained on
    assert len(res["action"]["mse"]) == PairsFile(tiny_pairs).read_clip("robot", 0, name="actions").shape[1]


def test_resume_continues_to_the_same_weights(tiny_pairs, tmp_path):
    cfg = BCConfig(head="continuous")
    train_policy(tiny_pairs, ENC, tmp_path / "full", cfg, TrainConfig(**FAST), progress=False)
    train_policy(tiny_pairs, ENC, tmp_path / "part", cfg, TrainConfig(**{**FAST, "steps": 30}), progress=False)
    train_policy(tiny_pairs, ENC, tmp_path / "part", cfg, TrainConfig(**FAST), resume=True, progress=False)
    wa, wb = load_file(str(tmp_path / "full/model.safetensors")), load_file(str(tmp_path / "part/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(HRAlignError, match="was run with --head 'continuous', this call passes 'binned'"):
        train_policy(tiny_pairs, ENC, tmp_path / "part", BCConfig(head="binned"), TrainConfig(**FAST), resume=True,
                     progress=False)
    with pytest.raises(HRAlignError, match="--resume to continue it or --overwrite"):
        train_policy(tiny_pairs, ENC, tmp_path / "part", cfg, TrainConfig(**FAST), progress=False)


def test_robot_fraction_limits_the_clips_with_actions(tiny_pairs, tmp_path):
    r = train_policy(tiny_pairs, ENC, tmp_path / "f", BCConfig(head="binned", num_bins=8),
                     TrainConfig(**{**FAST, "robot_fraction": 0.25}), progress=False)
    assert r["robot_action_clips"] == max(1, round(0.25 * r["train_clips"]["robot"]))


# --------------------------------------------------------------------------------------- latent policy
def _oracle_labels(pairs_path, path=None) -> TokenLabels:
    """LAM-format labels whose codes are the motion direction of the robot effector (gap 1); a human
    clip gets the codes of its frame-aligned robot partner. Tests the plumbing with a known answer."""
    pf = PairsFile(pairs_path)
    rows = {"human": ([], [], []), "robot": ([], [], [])}
    partner = {int(h): int(r) for h, r in pf.pairs}
    for h in range(pf.num_clips("human")):
        r = partner[h]
        act = pf.read_clip("robot", r, name="actions")
        T = min(len(act), int(pf.clip_lengths("human")[h]))
        ang = np.arctan2(act[: T - 1, 1], act[: T - 1, 0])
        moving = np.hypot(act[: T - 1, 0], act[: T - 1, 1]) > 1e-4
        code = np.where(moving, (np.round(ang / (np.pi / 2)).astype(int) % 4) + 1, 0)
        codes = np.stack([code, (act[: T - 1, 3] > 0.5).astype(int)], 1)
        for d, c in (("human", h), ("robot", r)):
            rows[d][0].append(np.full(T - 1, c)); rows[d][1].append(np.arange(T - 1)); rows[d][2].append(codes)
    arrays = {d: tuple(np.concatenate(x).astype(np.int64) for x in v) for d, v in rows.items()}
    if path is not None:  # the labels.h5 layout of hralign.lam.labels
        with h5py.File(path, "w") as f:
            f.attrs.update({"hralign_format": "lam_labels", "hralign_version": 1, "gap": 1, "codebook_size": 5,
                            "tokens": 2, "code_dim": 1, "latent_dim": 2, "pairs_path": str(pairs_path),
                            "pairs_sha256": "", "lam": "oracle", "lam_sha256": ""})
            for d, (clip, t, codes) in arrays.items():
                g = f.create_group(d)
                g.create_dataset("codes", data=codes)
                g.create_dataset("latents", data=codes.astype(np.float32))
                g.create_dataset("clip", data=clip)
                g.create_dataset("t", data=t)
    return TokenLabels(num_tokens=2, codebook_size=5, gap=1, source="oracle", rows=arrays)


def test_latent_policy_learns_tokens_on_heldout_clips_of_both_embodiments(small_pairs, tmp_path):
    labels = tmp_path / "labels.h5"
    _oracle_labels(small_pairs, labels)
    cfg = LatentPolicyConfig(head="continuous")
    train_policy(small_pairs, EncoderSource("r3m-resnet18", image_size=32), tmp_path / "lat", cfg,
                 TrainConfig(**{**FAST, "latent_steps": 300, "robot_fraction": 0.2}), labels=labels, progress=False)
    res = evaluate_policy(tmp_path / "lat", small_pairs)
    for d in ("human", "robot"):
        r = res["latent"][d]
        assert r["frames"] > 0
        assert r["token_accuracy"] > r["chance"] + 0.1, (d, r)
    assert "action" in res and res["action"]["frames"] > 0
    policy, meta = load_policy(tmp_path / "lat")
    assert meta["kind"] == "latent" and policy.dims["num_tokens"] == 2


def test_latent_policy_rejects_labels_of_another_file(tiny_pairs, small_pairs, tmp_path):
    labels = _oracle_labels(small_pairs)  # small has more clips than tiny
    with pytest.raises(HRAlignError, match="another pairs file"):
        train_policy(tiny_pairs, ENC, tmp_path / "x", LatentPolicyConfig(), TrainConfig(**FAST), labels=labels,
                     progress=False)


# --------------------------------------------------------------------------------------- adapter + CLI
def test_adapter_plumbing_and_cli_eval(tiny_pairs, tmp_path):
    import hralign

    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    model = hralign.attach_adapter(enc, "bottleneck")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # not the identity: adapted features differ
    hralign.save_adapter(model, tmp_path / "adapter")
    code, out, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                             "--image-size", "32", "--adapter", str(tmp_path / "adapter"), "--head", "bc",
                             "--out", str(tmp_path / "p"), "--steps", "40", "--no-progress")
    assert code == 0, err
    assert "wrote" in out
    code, out, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(tmp_path / "p"), "--json")
    assert code == 0, err
    res = json.loads(out)
    # the figure is the saved policy's error on the recorded held-out clips through the recorded (adapted) encoder
    from hralign.pairs import PairsFile
    from hralign.policy.data import action_table, batch_of
    from hralign.policy.features import features_by_clip
    from hralign.policy.io import recorded_source

    policy, meta = load_policy(tmp_path / "p")
    pairs = PairsFile(tiny_pairs)
    held = np.asarray(meta["data"]["heldout_clips"]["robot"], dtype=np.int64)
    table = action_table(pairs, features_by_clip(recorded_source(meta, None, "t").robot_encoder(), pairs, "robot", held),
                         held, 1, True)
    want = ((policy.select_action(batch_of(table, None, None)) - table["action"]) ** 2).mean(0)
    assert res["action"]["frames"] == len(table["action"]) == 8 * len(held) > 0
    assert res["action"]["mse"] == pytest.approx(want.tolist(), rel=1e-5)
    assert res["action"]["mse_mean"] == pytest.approx(float(want.mean()), rel=1e-5)
    meta = json.loads((tmp_path / "p/config.json").read_text())
    assert meta["encoder"]["source"]["adapter"].endswith("adapter")


def _pairs_without_actions(path):
    rng = np.random.default_rng(0)
    with PairsWriter(path, tasks=["push"]) as w:
        for _ in range(3):
            h = w.add_clip("human", rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), 0)
            r = w.add_clip("robot", rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), 0)
            w.add_pair(h, r)
    return path


def test_cli_bad_input_is_one_line_exit_2(tiny_pairs, tmp_path):
    bad = _pairs_without_actions(tmp_path / "noact.h5")
    code, out, err = run_cli("policy", "train", "--pairs", str(bad), "--encoder", "r3m-resnet18", "--image-size",
                             "32", "--head", "continuous", "--out", str(tmp_path / "q"), "--no-progress")
    assert code == 2
    assert err.startswith("error: ") and "/robot/actions does not exist" in err and len(err.strip().splitlines()) == 1
    # a policy trained on 512-d features, evaluated with a 2048-d encoder
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size",
                           "32", "--out", str(tmp_path / "p18"), "--steps", "5", "--no-progress")
    assert code == 0, err
    code, out, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(tmp_path / "p18"),
                             "--encoder", "r3m-resnet50", "--image-size", "32")
    assert code == 2
    assert "512-d" in err and "2048-d" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--head", "bc",
                           "--labels", str(tmp_path / "none.h5"), "--out", str(tmp_path / "z"))
    assert code == 2 and "--head bc" in err
    code, _, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(tmp_path / "missing"))
    assert code == 2 and "not a directory" in err


def test_recorded_source_prefers_the_given_one_and_names_the_file_without_a_record():
    from hralign.errors import HRAlignError
    from hralign.policy.io import EncoderSource, recorded_source

    given = EncoderSource("r3m-resnet18", image_size=32)
    assert recorded_source({}, given, "p/config.json") is given
    rec = recorded_source({"encoder": {"source": {"encoder": "r3m-resnet18", "image_size": 48}}}, None, "p/config.json")
    assert rec.encoder == "r3m-resnet18" and rec.image_size == 48
    with pytest.raises(HRAlignError, match=r"p/config.json: no recorded encoder"):
        recorded_source({"encoder": {}}, None, "p/config.json")


@pytest.mark.parametrize("bad, match", [
    ({"robot_fraction": 0.0}, r"`robot_fraction` should be a number in \(0, 1\]"),
    ({"robot_fraction": True}, r"`robot_fraction`"),
    ({"split_by": "episode"}, r"`split_by` should be 'pair' or 'task'"),
    ({"weight_decay": -1e-3}, r"`weight_decay` should be a non-negative number"),
])
def test_policy_train_config_checks_are_shared_by_bc_and_gr1(bad, match):
    from hralign.policy.config import PolicyTrainConfig
    from hralign.policy.gr1.config import GR1TrainConfig
    for cls in (PolicyTrainConfig, TrainConfig, GR1TrainConfig):
        with pytest.raises(HRAlignError, match=match):
            cls(**bad)
    assert TrainConfig().weight_decay == 1e-4 and GR1TrainConfig().weight_decay == 1e-2  # each recipe's own default


def test_saved_policies_of_every_builtin_kind_load_through_the_registry(tmp_path):
    """config.json as `policy train` has always written it (kind bc / latent / gr1, config, dims) loads
    through the registry into the same class with the same weights and the same actions."""
    from hralign.policy import BCPolicy, LatentPolicy, make_policy, save_policy
    from hralign.policy.gr1 import GR1Config, GR1Policy

    torch.manual_seed(0)
    dims = {"feature_dim": 6, "action_dim": 3, "state_dim": 2, "instruction_dim": 0}
    made = {"bc": make_policy(BCConfig(head="continuous"), dims),
            "latent": make_policy(LatentPolicyConfig(instruction=False, context_frames=1), {**dims, "num_tokens": 2, "codebook_size": 4}),
            "gr1": make_policy(GR1Config(history=2, dim=16, heads=2, instruction=False), dims)}
    assert [type(p) for p in made.values()] == [BCPolicy, LatentPolicy, GR1Policy]
    x = {"features": torch.randn(5, 6), "state": torch.randn(5, 2)}
    for kind, policy in made.items():
        policy.fit_head(torch.rand(20, 3))
        save_policy(policy.eval(), tmp_path / kind, {})
        meta = json.loads((tmp_path / kind / "config.json").read_text())
        assert meta["kind"] == kind and set(meta) >= {"config", "dims", "weights_sha256"}
        loaded, _ = load_policy(tmp_path / kind)
        assert type(loaded) is type(policy) and loaded.config == policy.config and loaded.dims == policy.dims
        batch = {k: v[:, None] for k, v in x.items()} if kind == "gr1" else x  # GR-1 reads windows of steps
        assert torch.equal(loaded.select_action(batch), policy.select_action(batch))
