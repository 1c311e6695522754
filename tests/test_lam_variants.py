"""LAM variants as options: motion-weighted pixel loss, continuous latents (quantizer 'none'), action
supervision on a fraction of labelled robot pairs (LAOM), the target encoder's image size. Each
lowers its loss on a fixed batch and is refused with one line when wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_LAM_ARGS as TINY
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.lam.config import LAMConfig
from hralign.lam.model import LatentActionModel
from hralign.lam.supervision import ActionSupervision


def tiny_config(**kw) -> LAMConfig:
    base = dict(image_size=32, patch_size=8, dim=32, heads=2, idm_depth=1, fdm_depth=1, code_dim=8, conv_channels=8,
                idm="conv")
    base.update(kw)
    return LAMConfig(**base)


def _batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (8, 2, 32, 32, 3), dtype=torch.uint8, generator=g)
    return frames


def _fit(model: LatentActionModel, loss_of, steps: int = 15) -> tuple[float, float]:
    """(first, last) figure of ``steps`` Adam steps on one fixed batch; ``loss_of()`` -> (loss, figure)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(steps):
        loss, figure = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(figure.detach()) if first is None else first
        last = float(figure.detach())
    return first, last


@pytest.mark.parametrize("kw", [dict(motion_weight=5.0), dict(quantizer="none"),
                                dict(quantizer="none", latent_noise=0.1)])
def test_a_variant_lowers_its_loss_on_a_fixed_batch(kw):
    """The FDM's loss: motion-weighted MSE, or the MSE of continuous latents (whose total also holds the
    codebook's own k-means loss, which sends no gradient to the LAM and grows as the latents spread)."""
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(**kw)).train()
    x = m.preprocess(_batch())

    def step():
        out = m(x)
        return out.loss, (out.loss.detach() if kw.get("motion_weight") else out.recon_mse)

    first, last = _fit(m, step)
    assert last < 0.9 * first


def test_motion_loss_weights_moving_values_and_is_mse_without_motion():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(motion_weight=4.0))
    cur = torch.rand(2, 16, 192)
    tgt = cur.clone()
    tgt[:, :4] += 0.3  # the first 4 patches moved
    err_moving, err_still = tgt.clone(), tgt.clone()
    err_moving[:, :4] += 0.1
    err_still[:, 8:12] += 0.1
    assert float(m.motion_loss(err_moving, tgt, cur)) > 2 * float(m.motion_loss(err_still, tgt, cur))
    # no motion at all: every weight is 1 and the loss is plain MSE
    pred = cur + 0.05
    torch.testing.assert_close(m.motion_loss(pred, cur, cur), torch.nn.functional.mse_loss(pred, cur))


def test_continuous_latents_reach_the_fdm_and_the_codebook_still_clusters():
    torch.manual_seed(0)
    m = LatentActionModel(tiny_config(quantizer="none")).train()
    x = m.preprocess(_batch())
    z = m.encode(x)
    q = m.quantize(z)
    torch.testing.assert_close(q.quantized, z)  # no noise: the FDM reads the IDM's output itself
    assert float(q.loss.detach()) > 0  # the codebook's own loss (k-means), no gradient to the encoder
    q.loss.backward()
    assert m.quantizer.codebook.grad.abs().sum() > 0 and all(p.grad is None for p in m.idm.parameters())
    m.eval()
    torch.testing.assert_close(m.quantize(z).quantized, z)
    noisy = LatentActionModel(tiny_config(quantizer="none", latent_noise=0.5)).train()
    zn = noisy.encode(noisy.preprocess(_batch()))
    assert not torch.allclose(noisy.quantize(zn).quantized, zn)


@pytest.mark.parametrize("kw, match", [
    (dict(latent_noise=0.1), "`latent_noise` 0.1 is for continuous latents"),
    (dict(quantizer="none", latent_noise=-1.0), "`latent_noise` should be"),
    (dict(motion_weight=-1.0), "`motion_weight` should be"),
    (dict(motion_weight=1.0, target="features", target_encoder="r3m-resnet18"), "`motion_weight` weights the pixel"),
    (dict(target_image_size=64), "`target_image_size` 64 is only used with target='features'"),
    (dict(quantizer="vq"), "`quantizer` should be one of nsvq, ste, none"),
])
def test_variant_options_are_checked(kw, match):
    with pytest.raises(HRAlignError, match=match):
        tiny_config(**kw)


def test_action_supervision_labels_a_fraction_and_its_head_trains_the_idm(small_pairs):
    torch.manual_seed(0)
    cfg = tiny_config(image_size=48, patch_size=8, gap=1)
    m = LatentActionModel(cfg).train()
    sup = ActionSupervision(str(small_pairs), 0.25, 1, 48, cfg.latent_dim, seed=0)
    assert len(sup) == round(0.25 * sup.total) and sup.head.out_features == 4
    assert torch.allclose(sup.targets.mean(0), torch.zeros(4), atol=1e-5)  # standardised
    frames, targets = sup.batch(16, 0, 0)
    again = sup.batch(16, 0, 0)
    assert np.array_equal(frames, again[0]) and frames.shape == (16, 2, 48, 48, 3)
    opt_params = list(m.parameters()) + list(sup.head.parameters())
    opt = torch.optim.Adam(opt_params, lr=3e-3)
    losses = []
    for _ in range(15):
        loss = sup.loss(m, frames, targets)
        opt.zero_grad()
        loss.backward()
        if not losses:  # the head's gradient reaches the IDM
            assert sum(float(p.grad.abs().sum()) for p in m.idm.parameters() if p.grad is not None) > 0
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(HRAlignError, match="32x32|48x48"):
        ActionSupervision(str(small_pairs), 0.25, 1, 32, cfg.latent_dim)


def test_train_with_action_supervision_and_continuous_latents(tiny_pairs, tmp_path):
    out = tmp_path / "sup"
    code, stdout, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(out), "--gap", "2",
                                "--steps", "6", *TINY, "--quantizer", "none", "--motion-weight", "2",
                                "--action-pairs", str(tiny_pairs), "--action-fraction", "0.2", "--action-weight", "1")
    assert code == 0, err
    meta = json.loads((out / "lam.json").read_text())
    sup = meta["train"]["action_supervision"]
    assert sup["labelled_pairs"] == round(0.2 * sup["of_pairs"]) and sup["weight"] == 1.0
    assert meta["config"]["quantizer"] == "none" and meta["config"]["motion_weight"] == 2.0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("action_loss" in rec for rec in lines)
    # resume keeps the head (its weights are in the checkpoint beside the LAM's)
    code, _, err = run_cli("lam", "train", "--out", str(out), "--steps", "8", "--resume")
    assert code == 0, err


@pytest.mark.parametrize("args, match", [
    (["--action-weight", "1"], "`--action-weight` 1.0 needs `--action-pairs`"),
    (["--action-pairs", "x.h5"], "is unused without `--action-weight`"),
    (["--action-weight", "1", "--action-pairs", "x.h5", "--action-fraction", "0"], "`--action-fraction` should be"),
    (["--latent-noise", "0.1"], "`latent_noise` 0.1 is for continuous latents"),
    (["--motion-weight", "-2"], "`motion_weight` should be"),
])
def test_bad_variant_options_exit_2_with_one_line(tiny_pairs, tmp_path, args, match):
    code, _, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "bad"), "--steps", "1",
                           *TINY, *args)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
