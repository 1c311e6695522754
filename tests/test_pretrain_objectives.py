"""The objective registry of `hralign pretrain`: each objective learns, resumes exactly, refuses bad options."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import hralign
from hralign.encoders.api import RandomInitWarning
from hralign.errors import HRAlignError
from hralign.metrics import participation_ratio
from hralign.pretrain.config import LEGACY_FIELDS, PretrainConfig, objective_fields
from hralign.pretrain.data import PretrainData
from hralign.pretrain.objectives import (OBJECTIVES, InfoNCEConfig, MAEConfig, ObjectiveContext, R3MConfig,
                                         R3MVICRegConfig, objective_class, register_objective)
from hralign.pretrain.objectives import registry
from hralign.pretrain.objectives.infonce import nt_xent, pair_positions
from hralign.pretrain.objectives.mae import masked_patch_loss, patchify, random_masking, unpatchify
from hralign.pretrain.objectives.vicreg import vicreg_terms
from hralign.pretrain.sampling import augment_frames, jitter_frames
from hralign.pretrain.trainer import pretrain

RESNET, VIT = "timm:resnet10t", "timm:test_vit"
# objective -> (its config for the fast tests, encoder, image size: the ViT's 16 px patches need 64 px for a 4x4 grid)
CASES = {
    "r3m": (R3MConfig(text_encoder="none"), RESNET, 32),
    "r3m+vicreg": (R3MVICRegConfig(text_encoder="none"), RESNET, 32),
    "mae": (MAEConfig(mae_decoder_dim=32, mae_decoder_depth=1, mae_decoder_heads=2, mae_frames=2), VIT, 64),
    "tcn-infonce": (InfoNCEConfig(infonce_proj_dim=16), RESNET, 32),
}
TINY = ["--steps", "2", "--batch-size", "4", "--image-size", "32", "--eval-every", "0", "--log-every", "1",
        "--eval-frames", "3", "--quiet"]


class _Interrupt(Exception):
    pass


def _encoder(name: str, size: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = hralign.load_encoder(name, image_size=size)
    return enc.set_trainable(True).train()


def _objective(name: str, data: PretrainData, **context):
    config, enc_name, size = CASES[name]
    enc = _encoder(enc_name, size)
    ctx = ObjectiveContext(data=data, device=torch.device("cpu"), seed=0, image_size=size, **context)
    return objective_class(name)(config, enc, ctx)


@pytest.fixture(scope="module")
def human_data(tiny_pairs):
    return PretrainData(tiny_pairs, "human")


# ------------------------------------------------------------------------------------ registry and config
def test_registry_has_the_four_objectives_and_refuses_unknown_and_duplicate_names(monkeypatch):
    assert list(OBJECTIVES) == ["r3m", "r3m+vicreg", "mae", "tcn-infonce"]
    with pytest.raises(HRAlignError, match="`--objective` should be one of r3m, r3m\\+vicreg, mae, tcn-infonce"):
        objective_class("simclr")
    monkeypatch.setattr(registry, "OBJECTIVES", dict(OBJECTIVES))
    with pytest.raises(HRAlignError, match="already registered"):
        register_objective("mae", OBJECTIVES["mae"])

    @dataclasses.dataclass
    class Clash:  # a field of R3M's with another default would be one option meaning two things
        alpha: float = 0.3

    class Other:
        config_class = Clash

    with pytest.raises(HRAlignError, match="`alpha`"):
        register_objective("other", Other)
    assert "other" not in registry.OBJECTIVES


def test_objective_fields_never_collide_with_the_shared_ones():
    shared = {f.name for f in dataclasses.fields(PretrainConfig)}
    own = objective_fields()
    assert all(not (set(names) & shared) for names in own.values())
    # only r3m+vicreg shares fields, R3M's, as their subclass
    assert set(own["r3m"]) < set(own["r3m+vicreg"])
    assert not set(own["mae"]) & set(own["tcn-infonce"]) and not set(own["mae"]) & set(own["r3m+vicreg"])


@pytest.mark.parametrize("name", list(CASES))
def test_config_round_trips_through_the_flat_run_record(name):
    config = PretrainConfig(objective=name, objective_config=CASES[name][0], steps=7)
    flat = config.to_dict()
    assert flat["objective"] == name and all(not isinstance(v, dict) for v in flat.values())
    again = PretrainConfig.from_dict(flat)
    assert again.objective_config == config.objective_config and again.to_dict() == flat


def test_config_defaults_and_refusals():
    assert PretrainConfig().objective == "r3m" and PretrainConfig().objective_config == R3MConfig()
    assert PretrainConfig(objective="mae").objective_config == MAEConfig()
    with pytest.raises(HRAlignError, match="`objective_config` should be a MAEConfig for --objective mae"):
        PretrainConfig(objective="mae", objective_config=R3MConfig())
    with pytest.raises(HRAlignError, match="should be a R3MConfig"):  # the subclass is another objective
        PretrainConfig(objective_config=R3MVICRegConfig())
    # a run.json written before objectives existed: no objective, R3M's fields -> an R3M config
    old = {k: v for k, v in PretrainConfig(objective_config=R3MConfig(tcn_weight=0.5)).to_dict().items()
           if k not in LEGACY_FIELDS}
    assert PretrainConfig.from_dict(old).objective_config == R3MConfig(tcn_weight=0.5)
    with pytest.raises(HRAlignError, match="unknown keys \\['mae_mask_ratio'\\]"):
        PretrainConfig.from_dict({**old, "mae_mask_ratio": 0.5})


@pytest.mark.parametrize("cls, kwargs, flag", [
    (MAEConfig, {"mae_mask_ratio": 1.0}, "--mae-mask-ratio"), (MAEConfig, {"mae_mask_ratio": 0.0}, "--mae-mask-ratio"),
    (MAEConfig, {"mae_decoder_dim": 30}, "--mae-decoder-dim"), (MAEConfig, {"mae_frames": 0}, "--mae-frames"),
    (InfoNCEConfig, {"infonce_temperature": 0.0}, "--infonce-temperature"),
    (InfoNCEConfig, {"infonce_min_offset": 3, "infonce_max_offset": 2}, "--infonce-max-offset"),
    (InfoNCEConfig, {"infonce_proj_dim": -1}, "--infonce-proj-dim"),
    (R3MVICRegConfig, {"vicreg_var_weight": -1.0}, "--vicreg-var-weight"),
    (R3MVICRegConfig, {"vicreg_var_weight": 0.0, "vicreg_cov_weight": 0.0}, "--vicreg-var-weight"),
    (R3MVICRegConfig, {"vicreg_gamma": 0.0}, "--vicreg-gamma"), (R3MVICRegConfig, {"alpha": 0.9}, "--alpha"),
])
def test_objective_configs_reject_bad_values_naming_the_flag(cls, kwargs, flag):
    with pytest.raises(HRAlignError, match=flag):
        cls(**kwargs)


# ------------------------------------------------------------------------------------ pure pieces
def test_vicreg_terms_measure_collapse_and_correlation():
    g = torch.Generator().manual_seed(0)
    spread = 3.0 * torch.randn(4096, 8, generator=g)  # std 3 >= gamma, independent dimensions
    var, cov = vicreg_terms(spread)
    assert var.item() == 0.0 and cov.item() < 0.05 * 9
    collapsed = torch.ones(16, 8)  # every row the same point
    var, cov = vicreg_terms(collapsed, gamma=1.0)
    assert var.item() == pytest.approx(1.0 - 1e-2, abs=1e-4) and cov.item() == 0.0
    one_direction = torch.randn(512, 1, generator=g).repeat(1, 8)  # 8 copies of one dimension
    assert vicreg_terms(one_direction)[1].item() > 10 * vicreg_terms(torch.randn(512, 8, generator=g))[1].item()
    # gradient of the hinge pushes a narrow dimension apart
    z = (0.1 * torch.randn(64, 4, generator=g)).requires_grad_()
    vicreg_terms(z)[0].backward()
    with torch.no_grad():
        assert vicreg_terms(z - 0.5 * z.grad * len(z))[0] < vicreg_terms(z)[0]
    with pytest.raises(HRAlignError):
        vicreg_terms(torch.ones(1, 4))


def test_nt_xent_prefers_the_temporal_partner_over_every_other_frame():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 16, generator=g)
    pairs = torch.stack([base, base + 0.05 * torch.randn(6, 16, generator=g)], 1)  # (B, 2, D)
    good, acc = nt_xent(pairs, 0.1)
    assert acc.item() == 1.0 and good.item() < 0.1
    swapped = torch.stack([base, base.roll(1, 0)], 1)  # partners are other clips' frames
    bad, bad_acc = nt_xent(swapped, 0.1)
    assert bad_acc.item() == 0.0 and bad.item() > good.item() + 1.0
    # a row is never its own negative: two identical pairs do not make the loss infinite
    assert torch.isfinite(nt_xent(torch.ones(2, 2, 4), 0.1)[0])
    with pytest.raises(HRAlignError):
        nt_xent(torch.ones(1, 2, 4), 0.1)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 40), lo=st.integers(1, 5), extra=st.integers(0, 5), seed=st.integers(0, 2**31))
def test_pair_positions_stay_in_the_clip_at_an_allowed_offset(length, lo, extra, seed):
    t, u = pair_positions(length, lo, lo + extra, torch.Generator().manual_seed(seed))
    assert 0 <= t < u <= length - 1
    assert min(lo, length - 1) <= u - t <= min(lo + extra, length - 1)


def test_random_masking_keeps_the_lowest_noise_patches_and_restores_the_order():
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(0))
    ids_keep, mask, ids_restore = random_masking(noise, 4)
    assert ids_keep.shape == (3, 4) and mask.sum(1).tolist() == [12.0] * 3
    for row in range(3):
        assert set(ids_keep[row].tolist()) == set(noise[row].argsort()[:4].tolist())
        assert (mask[row, ids_keep[row]] == 0).all()  # kept <-> not masked
    shuffled = noise.argsort(1)
    assert torch.equal(shuffled.gather(1, ids_restore), torch.arange(16).expand(3, -1))


def test_patchify_round_trip_and_the_loss_reads_masked_patches_only():
    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 16)
    assert patches.shape == (2, 6, 16 * 16 * 3)
    assert torch.equal(unpatchify(patches, 16, (2, 3)), images)
    assert torch.equal(patches[0, 1].view(16, 16, 3).permute(2, 0, 1), images[0, :, :16, 16:32])  # row-major
    mask = torch.zeros(2, 6)
    mask[:, [1, 4]] = 1
    pred = torch.randn(2, 6, 768)
    loss = masked_patch_loss(pred, images, mask, 16)
    pred2 = pred.clone()
    pred2[:, 0] += 5.0  # a visible patch: not counted
    assert masked_patch_loss(pred2, images, mask, 16) == loss
    pred2[:, 1] += 5.0  # a masked one: counted
    assert masked_patch_loss(pred2, images, mask, 16) > loss
    # norm_pix: the target is each patch standardised, so a per-patch offset and scale change nothing
    target = patchify(images, 16)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert masked_patch_loss(normed, images, mask, 16).item() == pytest.approx(0.0, abs=1e-8)
    assert masked_patch_loss(normed, 2 * images + 1, mask, 16).item() == pytest.approx(0.0, abs=1e-6)


def test_jitter_is_one_draw_per_sample_and_off_draws_nothing():
    g = torch.Generator().manual_seed(0)
    frame, other = torch.rand(1, 3, 20, 20, generator=g), torch.rand(1, 3, 20, 20, generator=g)
    off = torch.Generator().manual_seed(5)
    x = torch.cat([frame, other])
    assert jitter_frames(x, 0.0, off) is x
    assert torch.equal(off.get_state(), torch.Generator().manual_seed(5).get_state())  # nothing drawn
    out = jitter_frames(torch.cat([frame, frame, other]), 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], frame[0], atol=1e-3)
    assert 0.0 <= out.min() and out.max() <= 1.0
    alone = jitter_frames(other, 1.0, torch.Generator().manual_seed(7))  # the same draw on the third frame
    assert torch.allclose(out[2:], alone, atol=1e-6)
    both = augment_frames(torch.cat([frame, frame]), 12, 0.5, 1.0, torch.Generator().manual_seed(1))
    assert both.shape == (2, 3, 12, 12) and torch.equal(both[0], both[1])


def test_participation_ratio_counts_directions():
    g = np.random.default_rng(0)
    iso = g.standard_normal((4000, 16))
    assert 14.5 < participation_ratio(iso) <= 16.0
    line = g.standard_normal((500, 1)) @ np.ones((1, 16)) + 1e-3 * g.standard_normal((500, 16))
    assert participation_ratio(line) < 1.1
    assert participation_ratio(100.0 * iso) == pytest.approx(participation_ratio(iso))  # standardised: scale-free
    assert np.isnan(participation_ratio(iso[:1]))
    with pytest.raises(HRAlignError):
        participation_ratio(iso[0])


def test_mae_encodes_visible_patches_as_the_vit_does_all_of_them(human_data):
    obj = _objective("mae", human_data)
    images = torch.rand(2, 3, 64, 64)
    x = obj.encoder.preprocess(images)
    everything = torch.arange(obj.num_patches).expand(2, -1)
    with torch.no_grad():
        ours = obj.encode_visible(x, everything)
        timm_tokens = obj.encoder.model.forward_features(x)
    assert torch.allclose(ours, timm_tokens, atol=1e-5)
    # resnets are refused in one line naming what works
    with pytest.raises(HRAlignError, match="needs a ViT encoder .*timm:resnet10t"):
        objective_class("mae")(MAEConfig(), _encoder(RESNET, 32), obj.context)


# ------------------------------------------------------------------------------------ each objective
@pytest.mark.parametrize("name", list(CASES))
def test_a_step_lowers_the_loss_on_a_fixed_batch(name, human_data):
    obj = _objective(name, human_data, crop_scale=0.6, color_jitter=0.5)
    rows, shared = obj.sample(human_data, 4, torch.Generator().manual_seed(0))
    assert rows["frames"].shape[:2] == (4, {"mae": 2, "tcn-infonce": 2}.get(name, 5))
    opt = torch.optim.Adam([p for p in obj.parameters() if p.requires_grad], lr=1e-3)
    before, logs = obj(rows, shared, 0)
    assert torch.isfinite(before) and logs
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after, _ = obj(rows, shared, 1)
    assert after.item() < before.item()


@pytest.mark.parametrize("name", ["r3m+vicreg", "mae", "tcn-infonce"])  # r3m: tests/test_pretrain_run.py
def test_resume_after_interruption_gives_identical_weights(name, tiny_pairs, tmp_path):
    config, enc, size = CASES[name]
    common = dict(pairs=str(tiny_pairs), encoder=enc, steps=4, batch_size=4, image_size=size, checkpoint_every=2,
                  eval_every=0, log_every=1, eval_frames=2, crop_scale=0.6, color_jitter=0.5, objective=name,
                  objective_config=config)
    full = pretrain(PretrainConfig(out=str(tmp_path / "full"), **common), progress=False, log=lambda s: None)
    assert full.objective == name and "frame_pr_human" in full.final

    def stop_at_3(step, _):
        if step == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        pretrain(PretrainConfig(out=str(tmp_path / "cut"), **common), progress=False, log=lambda s: None,
                 on_step=stop_at_3)
    resumed = pretrain(PretrainConfig(out=str(tmp_path / "cut"), resume=True, **common), progress=False,
                       log=lambda s: None)
    assert resumed.resumed_from == 2
    for f in ("model.safetensors", "checkpoints/step_00000004/model.safetensors"):
        a, b = load_file(str(tmp_path / "full" / f)), load_file(str(tmp_path / "cut" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    own = {"r3m+vicreg": "encoder.", "mae": "decoder.", "tcn-infonce": "head."}[name]
    assert any(k.startswith(own) for k in load_file(str(tmp_path / "full" / "checkpoints/step_00000004/model.safetensors")))
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
    # the same artefact as an R3M run, which records what trained it
    meta = json.loads((tmp_path / "full" / "hralign.json").read_text())
    assert meta["hralign_format"] == "encoder" and meta["pretraining"]["objective"] == name
    assert json.loads((tmp_path / "full" / "run.json").read_text())["config"]["objective"] == name
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["objective"] == name
    enc_out = hralign.load_encoder(str(tmp_path / "full"))
    assert enc_out.frozen and enc_out.image_size == size


# ------------------------------------------------------------------------------------ command line
def _one_line_error(code, stderr, *needles):
    assert code == 2, stderr
    assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, stderr
    for n in needles:
        assert n in stderr, stderr


@pytest.mark.parametrize("args, needles", [
    (["--objective", "simclr"], ["--objective", "r3m, r3m+vicreg, mae, tcn-infonce", "'simclr'"]),
    (["--objective", "mae", "--encoder", RESNET], ["needs a ViT encoder", "d4r-vit-b16", "timm:resnet10t"]),
    (["--objective", "mae", "--encoder", VIT, "--mae-mask-ratio", "1"], ["--mae-mask-ratio", "(0, 1)"]),
    (["--objective", "mae", "--encoder", VIT, "--mae-mask-ratio", "0.9"], ["--mae-mask-ratio", "every one of the 4"]),
    (["--objective", "mae", "--mae-decoder-dim", "30"], ["--mae-decoder-dim"]),
    (["--objective", "tcn-infonce", "--infonce-temperature", "0"], ["--infonce-temperature"]),
    (["--objective", "tcn-infonce", "--batch-size", "1"], ["--batch-size", "at least 2"]),
    (["--objective", "r3m+vicreg", "--vicreg-cov-weight", "-1"], ["--vicreg-cov-weight"]),
    (["--mae-mask-ratio", "0.5"], ["--mae-mask-ratio", "applies to --objective mae, not r3m"]),
    (["--objective", "mae", "--tcn-weight", "2"], ["--tcn-weight", "--objective r3m / r3m+vicreg, not mae"]),
    (["--color-jitter", "3"], ["--color-jitter", "[0, 2.5]"]),
])
def test_bad_options_are_one_line_errors_and_write_nothing(args, needles, tiny_pairs, tmp_path):
    out = tmp_path / "o"
    code, _, stderr = run_cli("pretrain", "--pairs", str(tiny_pairs), "--out", str(out), *TINY, *args)
    _one_line_error(code, stderr, *needles)
    assert not out.exists()


def test_a_run_json_without_objective_resumes_as_r3m(tiny_pairs, tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "--pairs", str(tiny_pairs), "--out", str(out), "--encoder", RESNET, "--text-encoder", "none",
            *TINY, "--checkpoint-every", "1"]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    assert "objective: r3m" in stdout and "frame participation ratio" in stdout
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["objective"] == "r3m" and run["objective"] == "r3m"
    for key in LEGACY_FIELDS:  # as written before objectives (and colour jitter) existed
        del run["config"][key]
    (out / "run.json").write_text(json.dumps(run))
    code, _, stderr = run_cli("pretrain", "--out", str(out), "--pairs", str(tiny_pairs), "--resume", "--steps", "3",
                              "--quiet")
    assert code == 0, stderr
    assert "objective" not in json.loads((out / "run.json").read_text())["config"]  # still reads as the old run
    # asking that run for another objective is a change like any other: refused, naming it
    code, _, stderr = run_cli("pretrain", "--out", str(out), "--pairs", str(tiny_pairs), "--resume", "--steps", "4",
                              "--objective", "r3m+vicreg", "--quiet")
    _one_line_error(code, stderr, "--objective", "'r3m+vicreg'")


def test_help_lists_every_objective_and_its_options():
    code, stdout, _ = run_cli("pretrain", "--help")
    assert code == 0
    assert "r3m | r3m+vicreg | mae | tcn-infonce" in " ".join(stdout.split())
    for names in objective_fields().values():
        for name in names:
            assert "--" + name.replace("_", "-") in stdout
    assert "--color-jitter" in stdout and "--objective-config" not in stdout


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", [
    ("r3m+vicreg", ["--encoder", RESNET, "--text-encoder", "none"]),
    ("tcn-infonce", ["--encoder", RESNET, "--infonce-proj-dim", "16"]),
    ("mae", ["--encoder", VIT, "--image-size", "64", "--mae-decoder-dim", "32", "--mae-decoder-depth", "1",
             "--mae-decoder-heads", "2", "--mae-frames", "2"]),
])
def test_two_processes_match_one(name, extra, tiny_pairs, tmp_path):
    """Each objective's loss is the one-process loss of the global batch: VICReg's statistics and
    InfoNCE's negatives over the gathered embeddings, MAE's mean over equal per-process shares.
    Tolerance as R3M's in tests/test_train_ddp.py (the ResNet's near-zero gradients, AdamW's step)."""
    from test_train_ddp import two_vs_one

    common = ["pretrain", "--pairs", str(tiny_pairs), "--objective", name, "--image-size", "32", "--steps", "3",
              "--batch-size", "4", "--eval-every", "0", "--eval-frames", "2", "--quiet", "--device", "cpu", *extra]
    two_vs_one("torchrun", common, tmp_path, share=1e-3, bound=1e-3)
