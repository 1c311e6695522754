"""LAM pieces on random tensors: config checks, patches, staged IDM, quantiser, dead-code restart, save/load."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.io import load_lam, save_lam
from hralign.lam.layers import patchify, unpatchify
from hralign.lam.model import LatentActionModel, to_frame_pairs
from hralign.lam.quantizer import VectorQuantizer, perplexity


def tiny_config(**kw) -> LAMConfig:
    base = dict(image_size=32, patch_size=8, dim=32, heads=2, idm_depth=1, fdm_depth=1, code_dim=8, conv_channels=8)
    base.update(kw)
    return LAMConfig(**base)


@pytest.mark.parametrize("kw, field", [
    (dict(patch_size=7), "patch_size"),
    (dict(idm="mlp"), "idm"),
    (dict(quantizer="gumbel"), "quantizer"),
    (dict(codebook_size=1), "codebook_size"),
    (dict(target="features"), "target_encoder"),
    (dict(tokens=0), "tokens"),
])
def test_config_rejects_bad_values_naming_the_field(kw, field):
    with pytest.raises(HRAlignError, match=field):
        tiny_config(**kw)


def test_lapa_defaults():
    c = LAMConfig()
    assert (c.codebook_size, c.tokens, c.image_size, c.patch_size) == (8, 4, 256, 32)
    assert (c.target_tokens, c.target_token_dim) == (64, 3 * 32 * 32)


def test_patchify_roundtrip_and_layout():
    x = torch.rand(2, 3, 16, 16)
    p = patchify(x, 4)
    assert p.shape == (2, 16, 48)
    # patch 1 is the top row, second column block
    assert torch.equal(p[0, 1].reshape(3, 4, 4), x[0, :, 0:4, 4:8])
    assert torch.equal(unpatchify(p, 4, 16), x)


@pytest.mark.parametrize("idm", ["transformer", "conv"])
def test_staged_idm_equals_full_forward(idm):
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(idm=idm)).eval()
    x = m.preprocess(torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8))
    full = m.idm(x)
    assert full.shape == (3, 4, 8)
    for stage in m.idm.stage_names:
        h = m.idm.forward_until(x, stage)
        torch.testing.assert_close(m.idm.forward_from(h, stage), full)


def test_untrained_fdm_is_the_copy_baseline_and_the_latent_gets_gradient():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config()).train()
    x = m.preprocess(torch.randint(0, 256, (4, 2, 32, 32, 3), dtype=torch.uint8))
    out = m(x)
    torch.testing.assert_close(out.recon_mse, out.copy_mse)
    out.loss.backward()
    assert m.fdm.out.weight.grad.abs().sum() > 0
    # after one step away from zero init the IDM receives gradient through the quantiser
    with torch.no_grad():
        m.fdm.out.weight.normal_(0, 0.01)
    m.zero_grad()
    m(x).loss.backward()
    assert m.idm.head.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["nsvq", "ste"])
def test_quantizer_gradients_and_hard_codes_in_eval(mode):
    torch.manual_seed(0)
    q = VectorQuantizer(6, 4, mode=mode).train()
    z = torch.randn(5, 3, 4, requires_grad=True)
    out = q(z)
    assert out.codes.shape == (5, 3) and out.codes.dtype == torch.int64
    (out.quantized.pow(2).sum() + out.loss).backward()
    assert z.grad.abs().sum() > 0
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    q.eval()
    e = q(z.detach())
    torch.testing.assert_close(e.quantized, q.codebook[e.codes])
    # nearest code by brute force
    d = ((z.detach()[:, :, None, :] - q.codebook[None, None]) ** 2).sum(-1)
    assert torch.equal(e.codes, d.argmin(-1))


def test_perplexity_bounds():
    assert perplexity(torch.zeros(100, dtype=torch.long), 8) == pytest.approx(1.0)
    assert perplexity(torch.arange(800) % 8, 8) == pytest.approx(8.0)


def _starved_run(restart_every: int, steps: int = 40) -> tuple[int, float]:
    """A tiny VQ autoencoder on 8 data clusters whose codebook starts starved: code 0 near the
    data, codes 1..7 far away, so nearest-neighbour assignment never picks them."""
    torch.manual_seed(0)
    centres = torch.randn(8, 4) * 3
    enc, dec = nn.Linear(4, 4), nn.Linear(4, 4)
    q = VectorQuantizer(8, 4, mode="ste").train()
    with torch.no_grad():
        q.codebook.copy_(torch.full((8, 4), 50.0))
        q.codebook[0] = 0.0
        q.initialized.fill_(True)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), q.codebook], lr=1e-2)
    for step in range(1, steps + 1):
        x = centres[torch.randint(0, 8, (64,))] + 0.1 * torch.randn(64, 4)
        out = q(enc(x)[:, None, :])
        loss = ((dec(out.quantized[:, 0]) - x) ** 2).mean() + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if restart_every and step % restart_every == 0:
            q.restart_dead_codes(0.1)
    q.eval()
    codes = q(enc(centres.repeat(20, 1) + 0.1 * torch.randn(160, 4))[:, None, :]).codes
    return int(torch.unique(codes).numel()), perplexity(codes, 8)


def test_dead_code_restart_brings_starved_codes_back():
    used_without, ppl_without = _starved_run(restart_every=0)
    used_with, ppl_with = _starved_run(restart_every=10)
    assert used_without == 1 and ppl_without == pytest.approx(1.0)
    assert used_with >= 5 and ppl_with > 4.0  # above half the codebook


def test_restart_moves_only_dead_codes():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, mode="nsvq").train()
    q(torch.randn(10, 1, 2))  # data init
    with torch.no_grad():
        q.codebook[3] = 1e3  # starve code 3
        q.usage.zero_()
    z = torch.randn(50, 1, 2)
    q(z)
    before = q.codebook.detach().clone()
    dead = q.dead_codes(0.1).tolist()
    assert 3 in dead
    assert q.restart_dead_codes(0.1) == len(dead)
    live = [i for i in range(4) if i not in dead]
    torch.testing.assert_close(q.codebook[live], before[live])
    assert q.codebook[3].abs().max() < 20  # moved onto the data
    assert float(q.usage.sum()) == 0.0


def test_frame_pair_input_checks():
    ok = np.zeros((2, 2, 32, 32, 3), np.uint8)
    assert to_frame_pairs(ok, 32).shape == (2, 2, 3, 32, 32)
    with pytest.raises(HRAlignError, match="48x48 but the LAM was trained on 32x32"):
        to_frame_pairs(np.zeros((2, 2, 48, 48, 3), np.uint8), 32)
    with pytest.raises(HRAlignError, match=r"\(B, 2, H, W, 3\)"):
        to_frame_pairs(np.zeros((2, 32, 32, 3), np.uint8), 32)
    with pytest.raises(HRAlignError, match=r"\[0, 1\]"):
        to_frame_pairs(torch.full((1, 2, 3, 32, 32), 255.0), 32)


def test_save_load_roundtrip_and_version_check(tmp_path):
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config()).eval()
    save_lam(m, tmp_path / "lam")
    back = load_lam(tmp_path / "lam")
    x = m.preprocess(torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8))
    torch.testing.assert_close(back.idm(x), m.idm(x))
    meta_path = tmp_path / "lam" / "lam.json"
    meta = json.loads(meta_path.read_text())
    meta["hralign_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(HRAlignError, match="hralign_version` is 99, expected 1"):
        load_lam(tmp_path / "lam")


def test_changed_weights_are_refused(tmp_path):
    m = LatentActionModel(tiny_config())
    save_lam(m, tmp_path / "lam")
    w = tmp_path / "lam" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(HRAlignError, match="sha256 does not match"):
        load_lam(tmp_path / "lam")


def test_feature_target_lam_trains_on_a_frozen_encoders_map(tiny_pairs, tmp_path):
    """UniVLA-style target: the FDM rebuilds the frozen encoder's pre-pooling map of x_{t+H}."""
    import warnings

    from hralign.encoders import load_encoder, save_encoder
    from hralign.lam.train import LAMTrainConfig, train_lam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_encoder(load_encoder("r3m-resnet18", image_size=64), tmp_path / "enc")
    cfg = tiny_config(target="features", target_encoder=str(tmp_path / "enc"), gap=2, idm="conv")
    res = train_lam(cfg, LAMTrainConfig(pairs=str(tiny_pairs), out=str(tmp_path / "lam"), steps=3, batch_size=4,
                                        eval_pairs=8, log_every=1), progress=False)
    assert "psnr" not in res and res["copy_mse"] > 0 and res["recon_mse"] > 0
    back = load_lam(tmp_path / "lam")
    assert (back.config.target_tokens, back.config.target_token_dim) == (4, 512)  # layer4 of 64 px: 2x2x512


# -- FDM options: conv decoder, edge loss ---------------------------------------------------------
@pytest.mark.parametrize("kw, field", [
    (dict(fdm_decoder="deconv"), "fdm_decoder"),
    (dict(fdm_decoder="conv", patch_size=6, image_size=36), "power of 2"),
    (dict(fdm_decoder="conv", target="features", target_encoder="r3m-resnet18"), "target='pixels'"),
    (dict(fdm_channels=0), "fdm_channels"),
    (dict(edge_weight=-1.0), "edge_weight"),
])
def test_fdm_options_are_checked(kw, field):
    with pytest.raises(HRAlignError, match=field):
        tiny_config(**kw)


def test_conv_fdm_shapes_copy_identity_at_init_and_gradient():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(fdm_decoder="conv", fdm_channels=4)).train()
    x = m.preprocess(torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8))
    out = m(x)
    assert out.prediction.shape == (3, 16, 3 * 8 * 8)
    torch.testing.assert_close(out.prediction, m.pixel_tokens(x[:, 0] * 0.5 + 0.5))  # untrained == copy x_t
    torch.testing.assert_close(out.recon_mse, out.copy_mse)
    out.loss.backward()
    assert isinstance(m.fdm.out, nn.Conv2d) and m.fdm.out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        m.fdm.out.weight.normal_(0, 0.05)
    m.zero_grad()
    out = m(x)
    out.loss.backward()
    assert m.idm.head.proj.weight.grad.abs().sum() > 0  # the latent action reaches the conv decoder
    # the residual is per pixel: it is not constant inside a patch (the linear head could be, this must vary)
    res = (out.prediction - m.pixel_tokens(x[:, 0] * 0.5 + 0.5)).detach()
    assert res.abs().max() > 0


def test_conv_fdm_output_depends_on_the_action():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(fdm_decoder="conv", fdm_channels=4)).eval()
    with torch.no_grad():
        m.fdm.out.weight.normal_(0, 0.1)
    cur = m.pixel_tokens(torch.rand(2, 3, 32, 32))
    a = m.quantizer.codebook.new_zeros(2, 4, 8)
    b = torch.randn(2, 4, 8)
    assert (m.fdm(cur, a) - m.fdm(cur, b)).abs().max() > 1e-4


def test_conv_fdm_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(fdm_decoder="conv", fdm_channels=4, edge_weight=0.5)).eval()
    with torch.no_grad():
        m.fdm.out.weight.normal_(0, 0.05)
    save_lam(m, tmp_path / "lam")
    back = load_lam(tmp_path / "lam")
    assert (back.config.fdm_decoder, back.config.fdm_channels, back.config.edge_weight) == ("conv", 4, 0.5)
    cur, act = m.pixel_tokens(torch.rand(2, 3, 32, 32)), torch.randn(2, 4, 8)
    torch.testing.assert_close(back.fdm(cur, act), m.fdm(cur, act))


def test_lam_saved_before_the_fdm_options_still_loads(tmp_path):
    """A lam.json written before `fdm_decoder`/`fdm_channels`/`edge_weight` existed loads as the linear head."""
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config()).eval()
    save_lam(m, tmp_path / "lam")
    meta_path = tmp_path / "lam" / "lam.json"
    meta = json.loads(meta_path.read_text())
    for key in ("fdm_decoder", "fdm_channels", "edge_weight"):
        del meta["config"][key]
    meta_path.write_text(json.dumps(meta))
    back = load_lam(tmp_path / "lam")
    assert back.config.fdm_decoder == "linear" and back.config.edge_weight == 0.0
    cur, act = m.pixel_tokens(torch.rand(2, 3, 32, 32)), torch.randn(2, 4, 8)
    torch.testing.assert_close(back.fdm(cur, act), m.fdm(cur, act))


def test_edge_loss_is_zero_on_the_target_and_added_to_the_loss():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(edge_weight=2.0)).train()
    t = m.pixel_tokens(torch.rand(2, 3, 32, 32))
    assert float(m.edge_loss(t, t)) == 0.0
    assert float(m.edge_loss(t + 0.1, t)) == pytest.approx(0.0, abs=1e-10)  # a constant shift has no edges
    assert float(m.edge_loss(torch.zeros_like(t), t)) > 0
    x = m.preprocess(torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8))
    torch.manual_seed(1)
    with_edges = m(x)
    torch.manual_seed(1)
    m.config.edge_weight = 0.0
    plain = m(x)
    x01 = x * 0.5 + 0.5
    expected = 2.0 * m.edge_loss(with_edges.prediction, m.pixel_tokens(x01[:, 1]))
    torch.testing.assert_close(with_edges.loss - plain.loss, expected)


def test_cosine_learning_rate_schedule():
    """The LAM's --lr-schedule is the training layer's (timm): cosine from --lr at step 0 to 0 at --steps."""
    from hralign.lam.train import LAMTrainConfig
    from hralign.train.optim import make_optimizer_and_scheduler, set_lr_for_step

    def lrs(cfg):
        _, sched = make_optimizer_and_scheduler([torch.nn.Parameter(torch.zeros(1))], cfg, cfg.steps)
        return [set_lr_for_step(sched, s) for s in range(cfg.steps + 1)]

    cos = lrs(LAMTrainConfig(pairs="p.h5", out="o", steps=100, lr=1e-3, lr_schedule="cosine"))
    assert cos[0] == pytest.approx(1e-3)
    assert cos[50] == pytest.approx(5e-4)
    assert cos[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(cos))
    const = lrs(LAMTrainConfig(pairs="p.h5", out="o", steps=100, lr=1e-3))
    assert {const[s] for s in (0, 50, 99)} == {1e-3}
    with pytest.raises(HRAlignError, match="lr-schedule"):
        LAMTrainConfig(pairs="p.h5", out="o", lr_schedule="step")


# -- unrolled FDM training ------------------------------------------------------------------------
def test_frame_sequences_are_gap_apart_and_pairs_unchanged(tiny_pairs):
    from hralign.lam.data import FramePairs
    from hralign.pairs import PairsFile

    pf = PairsFile(tiny_pairs)
    pairs = FramePairs(pf, ("robot",), 2)
    seqs = FramePairs(pf, ("robot",), 2, steps=3)
    assert len(pairs) == sum(n - 2 for n in pf.clip_lengths("robot"))
    assert len(seqs) == sum(n - 6 for n in pf.clip_lengths("robot"))
    got = seqs.get(np.array([0, len(seqs) - 1]))
    assert got.shape == (2, 4, 32, 32, 3)
    clip, t = int(seqs.index.clip[-1]), int(seqs.index.t[-1])
    np.testing.assert_array_equal(got[1], pf.read_clip("robot", clip, [t, t + 2, t + 4, t + 6]))
    assert pairs.get(np.array([0])).shape == (1, 2, 32, 32, 3)
    with pytest.raises(HRAlignError, match="span 12 frames"):
        FramePairs(pf, ("robot",), 4, steps=3)


def test_unrolled_loss_one_step_is_forward_and_untrained_k_steps_is_copy():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(idm="conv")).train()
    seq = torch.randint(0, 256, (3, 3, 32, 32, 3), dtype=torch.uint8)
    x = (seq.permute(0, 1, 4, 2, 3).float() / 255.0 - 0.5) / 0.5  # (B, 3, 3, S, S)
    m(x[:, :2])  # initialise the codebook from data
    torch.manual_seed(1)
    one = m.forward_unrolled(x[:, :2])
    torch.manual_seed(1)
    ref = m(x[:, :2])
    torch.testing.assert_close(one.loss, ref.loss)
    two = m.forward_unrolled(x)  # untrained FDM: every step copies x_0
    f = m.pixel_tokens(x * 0.5 + 0.5)
    expected = (torch.nn.functional.mse_loss(f[:, 0], f[:, 1]) + torch.nn.functional.mse_loss(f[:, 0], f[:, 2])) / 2
    torch.testing.assert_close(two.loss, expected)
    assert two.codes.shape == (6, 4)


def test_unrolled_loss_trains_idm_and_fdm():
    """The IDM reads every pair of the sequence and gets gradient through the unrolled FDM."""
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(idm="conv", fdm_decoder="conv", fdm_channels=4)).train()
    with torch.no_grad():
        m.fdm.out.weight.normal_(0, 0.05)
    x = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    m(x[:, :2])
    z = m.encode(torch.stack([x[:, :-1], x[:, 1:]], 2).reshape(4, 2, 3, 32, 32))
    assert z.shape == (4, 4, 8)
    out = m.forward_unrolled(x)
    out.loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in m.idm.parameters() if p.grad is not None) > 0
    assert m.fdm.out.weight.grad.abs().sum() > 0


def test_train_with_rollout_steps_writes_a_loadable_lam(tiny_pairs, tmp_path):
    from hralign.lam.train import LAMTrainConfig, train_lam

    cfg = tiny_config(idm="conv", gap=2, fdm_decoder="conv", fdm_channels=4)
    res = train_lam(cfg, LAMTrainConfig(pairs=str(tiny_pairs), out=str(tmp_path / "lam"), steps=4, batch_size=4,
                                        eval_pairs=8, log_every=2, rollout_steps=2, lr_schedule="cosine"),
                    progress=False)
    assert res["eval_pairs"] == 8 and res["recon_mse"] > 0
    back = load_lam(tmp_path / "lam")
    assert back.config.fdm_decoder == "conv"
    with pytest.raises(HRAlignError, match="rollout-steps"):
        LAMTrainConfig(pairs="p.h5", out="o", rollout_steps=0)
