"""GR-1-style future-feature auxiliary of the policies (hralign.policy.future)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_policy import ENC, FAST, _oracle_labels

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.policy import (
    BCConfig,
    LatentPolicyConfig,
    TrainConfig,
    load_policy,
    train_policy,
)
from hralign.policy.features import features_by_clip
from hralign.policy.future import FutureHead, future_columns

pytestmark = pytest.mark.filterwarnings("ignore::hralign.encoders.RandomInitWarning")


def _metrics(run, key, stage="action"):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if r["stage"] == stage and key in r]


def test_future_columns_pick_frame_t_plus_delta_and_mask_past_the_end():
    f = torch.arange(5.0)[:, None].repeat(1, 3)  # frame i has features [i, i, i]
    cols = future_columns(f, np.arange(5), 2)
    assert cols["future"][:, 0].tolist() == [2, 3, 4, 4, 4]
    assert cols["future_valid"].tolist() == [1, 1, 1, 0, 0]


def test_future_head_loss_masks_rows_and_uses_standardised_targets():
    torch.manual_seed(0)
    feats = torch.randn(200, 6) * 5 + 3
    head = FutureHead(4, 6).fit(feats)
    assert torch.allclose(head.mean, feats.mean(0), atol=1e-5)
    # with a head that outputs exactly the standardised target, the loss is 0; the masked rows do not count
    head.proj.weight.data.zero_()
    head.proj.bias.data.zero_()
    with torch.no_grad():
        h = torch.zeros(2, 4)
        target = torch.stack([feats.mean(0), feats.mean(0) + 100])  # row 2 is far off but masked
        assert float(head.loss(h, target, torch.tensor([1.0, 0.0]))) == pytest.approx(0.0, abs=1e-6)
        assert float(head.loss(h, target, torch.tensor([1.0, 1.0]))) > 10
        assert float(head.loss(h, target, torch.zeros(2))) == 0.0


def test_config_checks_future_options():
    with pytest.raises(HRAlignError, match="future_features"):
        BCConfig(future_features=-1)
    with pytest.raises(HRAlignError, match="future_loss"):
        BCConfig(future_loss="l1")
    with pytest.raises(HRAlignError, match="future_weight"):
        LatentPolicyConfig(future_weight=-0.5)


def test_bc_future_auxiliary_trains_and_roundtrips(tiny_pairs, tmp_path):
    cfg = BCConfig(head="continuous", future_features=2, future_weight=1.0, future_loss="mse")
    train_policy(tiny_pairs, ENC, tmp_path / "fut", cfg, TrainConfig(**{**FAST, "steps": 120, "log_every": 10}),
                 progress=False)
    fl = _metrics(tmp_path / "fut", "future_loss")
    assert len(fl) == 12 and np.mean(fl[-3:]) < 0.8 * np.mean(fl[:2]), fl
    policy, meta = load_policy(tmp_path / "fut")
    assert meta["config"]["future_features"] == 2 and policy.future_head is not None
    # the fitted standardisation and the trained head come back from model.safetensors
    pf = PairsFile(tiny_pairs)
    feats = features_by_clip(ENC.robot_encoder(), pf, "robot", [0])[0]
    assert not torch.allclose(policy.future_head.mean, torch.zeros_like(policy.future_head.mean))
    h = policy.net.trunk(torch.cat([feats, torch.from_numpy(pf.read_clip("robot", 0, name="state"))], 1))
    pred = policy.future_head(h) * policy.future_head.std + policy.future_head.mean
    assert pred.shape == feats.shape
    # predicting frame t+2 beats predicting the training mean on this clip's frames that have one
    err = (pred[:-2] - feats[2:]).pow(2).mean()
    base = (policy.future_head.mean - feats[2:]).pow(2).mean()
    assert err < base
    # without the option there is no head and no future loss in the metrics
    train_policy(tiny_pairs, ENC, tmp_path / "plain", BCConfig(head="continuous"), TrainConfig(**FAST), progress=False)
    plain, _ = load_policy(tmp_path / "plain")
    assert plain.future_head is None and not _metrics(tmp_path / "plain", "future_loss")


def test_latent_policy_future_auxiliary_trains_on_both_embodiments(small_pairs, tmp_path):
    labels = tmp_path / "labels.h5"
    _oracle_labels(small_pairs, labels)
    cfg = LatentPolicyConfig(head="continuous", future_features=3)
    r = train_policy(small_pairs, ENC, tmp_path / "lat", cfg,
                     TrainConfig(**{**FAST, "latent_steps": 100, "log_every": 10}), labels=labels, progress=False)
    assert r["token_rows_human"] > 0 and r["token_rows_robot"] > 0
    fl = _metrics(tmp_path / "lat", "future_loss", stage="latent")
    assert len(fl) == 10 and np.mean(fl[-3:]) < np.mean(fl[:2]), fl
    assert not _metrics(tmp_path / "lat", "future_loss", stage="action")  # trunk frozen in the action stage
    policy, meta = load_policy(tmp_path / "lat")
    assert policy.future_head is not None and meta["config"]["future_loss"] == "cosine"


def test_cli_future_features_option(tiny_pairs, tmp_path):
    code, out, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                             "--image-size", "32", "--head", "bc", "--future-features", "1", "--future-loss", "mse",
                             "--steps", "20", "--batch-size", "32", "--no-progress", "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "future_loss" in out
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert meta["config"]["future_features"] == 1 and meta["config"]["future_loss"] == "mse"
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                           "--image-size", "32", "--future-features", "100", "--steps", "5", "--no-progress",
                           "--out", str(tmp_path / "d"))
    assert code == 2 and "--future-features 100" in err and len(err.strip().splitlines()) == 1
