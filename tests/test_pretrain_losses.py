"""R3M's loss terms, sampling and config as pure functions (no pairs file, no encoder)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hralign.crop import crop_params
from hralign.errors import HRAlignError
from hralign.pretrain.config import PretrainConfig
from hralign.pretrain.objectives import R3MConfig
from hralign.pretrain.losses import (LanguageScorer, language_loss, lp_penalties, make_similarity, negative_indices,
                                     standardize_instructions, tcn_loss)
from hralign.pretrain.sampling import crop_frames, sample_frame_indices


def test_l2_similarity_is_negative_distance_and_cosine_scaled():
    a, b = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert torch.allclose(make_similarity("l2")(a, b), torch.tensor([-5.0, -math.sqrt(5.0)]), atol=1e-5)
    assert torch.allclose(make_similarity("l2", 2.0)(a, b), torch.tensor([-2.5, -math.sqrt(5.0) / 2]), atol=1e-5)
    cos = make_similarity("cosine", 0.1)(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(cos, torch.tensor([math.sqrt(0.5) / 0.1]), atol=1e-4)
    # l2 has a finite gradient at zero distance (a norm's gradient is undefined there)
    x = torch.zeros(1, 3, requires_grad=True)
    make_similarity("l2")(x, torch.zeros(1, 3)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_negative_indices_never_pick_the_clip_itself():
    g = torch.Generator().manual_seed(0)
    for batch in (2, 3, 8):
        idx = negative_indices(batch, 50, g)
        assert idx.shape == (50, batch)
        assert not (idx == torch.arange(batch)).any()
        for row in idx:  # each draw is a permutation of the batch
            assert sorted(row.tolist()) == list(range(batch))
    with pytest.raises(ValueError):
        negative_indices(1, 3, g)


def _triplets(order_ok: bool, batch: int = 6, dim: int = 4):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(batch, dim, generator=g) * 10  # clips far apart
    e0, e1, e2 = base + 0.0, base + 1.0, base + 2.0  # along a line: s1 between s0 and s2
    if not order_ok:
        e0, e1, e2 = base + 2.0, base + 5.0, base + 0.5  # s0 next to s2, s1 far from both
    return e0, e1, e2


def test_tcn_loss_rewards_temporal_order():
    sim = make_similarity("l2")
    neg = negative_indices(6, 3, torch.Generator().manual_seed(0))
    good_loss, good_acc = tcn_loss(*_triplets(True), neg, neg, sim)
    bad_loss, bad_acc = tcn_loss(*_triplets(False), neg, neg, sim)
    assert good_acc.item() == 1.0
    assert bad_acc.item() == 0.0
    assert good_loss < bad_loss


def test_tcn_loss_gradient_descent_learns_order_on_free_embeddings():
    torch.manual_seed(0)
    emb = torch.randn(3, 8, 16, requires_grad=True)  # (s0/s1/s2, clips, dim)
    with torch.no_grad():  # start from the wrong order: s1 farthest from s2
        emb[1] = emb[2] + 3 * torch.randn(8, 16)
    opt = torch.optim.Adam([emb], lr=0.05)
    sim, g = make_similarity("l2"), torch.Generator().manual_seed(0)
    first = None
    for _ in range(200):
        neg = negative_indices(8, 3, g)
        loss, acc = tcn_loss(emb[0], emb[1], emb[2], neg, neg, sim)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5
    assert acc.item() == 1.0


def test_language_loss_trains_scorer_to_prefer_later_frames():
    torch.manual_seed(0)
    batch, dim, ldim = 8, 6, 5
    # each clip progresses along its own instruction's direction: e_t = base + t * direction
    lang = torch.nn.functional.normalize(torch.randn(batch, ldim), dim=-1)
    direction = torch.nn.functional.pad(lang, (0, dim - ldim))
    base = torch.randn(batch, dim)
    frame = {t: base + t * direction for t in range(5)}
    e0, es0, es1, es2, eg = frame[0], frame[1], frame[2], frame[3], frame[4]
    scorer = LanguageScorer(dim, ldim, hidden=32)
    opt = torch.optim.Adam(scorer.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        neg = torch.stack([negative_indices(batch, 3, g) for _ in range(3)])
        loss, acc = language_loss(scorer, e0, eg, es0, es1, es2, lang, neg)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]
    assert acc.item() > 0.8  # chance for 1 positive among 5 is 0.2


def test_language_loss_mask_drops_clips_without_instruction():
    torch.manual_seed(0)
    scorer = LanguageScorer(4, 3, hidden=8)
    e = [torch.randn(4, 4) for _ in range(5)]
    lang = torch.randn(4, 3)
    neg = torch.stack([negative_indices(4, 2, torch.Generator().manual_seed(k)) for k in range(3)])
    full, _ = language_loss(scorer, *e, lang, neg)
    only_first, _ = language_loss(scorer, *e, lang, neg, mask=torch.tensor([1.0, 0, 0, 0]))
    none, _ = language_loss(scorer, *e, lang, neg, mask=torch.zeros(4))
    assert none.item() == 0.0
    assert not torch.isclose(full, only_first)


def test_standardize_instructions_keeps_what_tells_near_identical_instructions_apart():
    # the demo's instructions under MiniLM: unit norm, pairwise cosine ~0.98 (a shared sentence,
    # one differing word); the scorer saw them as one instruction at 1/20 of the image scale
    torch.manual_seed(1)
    raw = torch.nn.functional.normalize(torch.randn(1, 384) + 0.15 * torch.randn(4, 384), dim=-1)
    raw_cos = torch.nn.functional.normalize(raw, dim=-1) @ torch.nn.functional.normalize(raw, dim=-1).T
    assert raw_cos[~torch.eye(4, dtype=torch.bool)].min() > 0.97
    out = standardize_instructions(raw)
    assert torch.allclose(out.mean(0), torch.zeros(384), atol=1e-5)  # centred on the instructions
    assert out.std(0, unbiased=False).mean().item() == pytest.approx(1.0, abs=1e-4)  # unit scale per dimension
    cos = torch.nn.functional.normalize(out, dim=-1) @ torch.nn.functional.normalize(out, dim=-1).T
    assert cos[~torch.eye(4, dtype=torch.bool)].max() < 0.0  # now clearly different directions
    # only the differences matter: a shared offset or a global scale changes nothing
    assert torch.allclose(standardize_instructions(3.0 * raw + 5.0), out, atol=1e-4)
    # repeated instructions (several clips of one task) do not weigh in the statistics
    assert torch.allclose(standardize_instructions(torch.cat([raw, raw[:1].repeat(5, 1)]))[:4], out, atol=1e-5)
    # rows without an instruction are left out of the statistics and zeroed
    masked = standardize_instructions(torch.cat([raw, torch.randn(1, 384)]), torch.tensor([1.0, 1, 1, 1, 0]))
    assert torch.allclose(masked[:4], out, atol=1e-5) and torch.count_nonzero(masked[4]) == 0
    # a single instruction is not centred away, only rescaled to unit per-dimension size
    one = standardize_instructions(raw[:1])
    assert torch.allclose(torch.nn.functional.normalize(one, dim=-1), raw[:1], atol=1e-5)
    assert one.pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=1e-4)


def test_lp_penalties_values():
    e = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    l1, l2 = lp_penalties(e)
    assert l1.item() == pytest.approx(3.5)
    assert l2.item() == pytest.approx(2.5, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(3, 60), alpha=st.floats(0.0, 0.5), seed=st.integers(0, 2**31))
def test_sampled_indices_are_ordered_and_inside_the_clip(length, alpha, seed):
    start, goal, s0, s1, s2 = sample_frame_indices(length, alpha, torch.Generator().manual_seed(seed))
    assert 0 <= s0 < s1 < s2 <= length - 1
    assert 0 <= start <= math.floor(alpha * (length - 1))
    assert math.ceil((1 - alpha) * (length - 1)) <= goal <= length - 1


def test_three_frame_clip_has_one_triplet_and_sampling_is_seeded():
    g = torch.Generator().manual_seed(3)
    assert all(sample_frame_indices(3, 0.2, g)[2:] == [0, 1, 2] for _ in range(20))
    a = [sample_frame_indices(20, 0.2, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert a[0] == a[1]
    draws = {tuple(sample_frame_indices(20, 0.2, g)) for _ in range(50)}
    assert len(draws) > 10  # actually random


@settings(max_examples=60, deadline=None)
@given(h=st.integers(4, 80), w=st.integers(4, 80), lo=st.floats(0.05, 1.0), seed=st.integers(0, 2**31))
def test_crop_params_inside_image(h, w, lo, seed):
    top, left, ch, cw = crop_params(h, w, (lo, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed))
    assert 0 <= top and 0 <= left and ch > 0 and cw > 0
    assert top + ch <= h and left + cw <= w


def test_same_crop_across_a_samples_frames():
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 3, 40, 40, generator=g)
    other = torch.rand(1, 3, 40, 40, generator=g)
    out = crop_frames(torch.cat([frame, frame, other]), 16, 0.3, torch.Generator().manual_seed(7))
    assert out.shape == (3, 3, 16, 16)
    assert torch.equal(out[0], out[1])
    # the third frame got the same crop as the first two: cropping it alone with the same draws matches
    alone = crop_frames(other, 16, 0.3, torch.Generator().manual_seed(7))
    assert torch.allclose(out[2], alone[0], atol=1e-6)
    # and a different seed gives a different crop
    assert not torch.allclose(crop_frames(frame, 16, 0.3, torch.Generator().manual_seed(8)), out[:1])


@pytest.mark.parametrize("kwargs, flag", [
    ({"steps": 0}, "--steps"), ({"batch_size": -1}, "--batch-size"), ({"domain": "dog"}, "--domain"),
    ({"crop_scale": 0.0}, "--crop-scale"), ({"color_jitter": -0.1}, "--color-jitter"),
    ({"color_jitter": 3.0}, "--color-jitter"), ({"objective": "simclr"}, "--objective"),
])
def test_config_rejects_bad_values_naming_the_flag(kwargs, flag):
    with pytest.raises(HRAlignError, match=flag):
        PretrainConfig(**kwargs)


@pytest.mark.parametrize("kwargs, flag", [
    ({"similarity": "dot"}, "--similarity"), ({"lang_norm": "l2"}, "--lang-norm"), ({"alpha": 0.7}, "--alpha"),
    ({"tcn_weight": 0.0, "lang_weight": 0.0}, "--tcn-weight"), ({"l1_weight": -1.0}, "--l1-weight"),
    ({"num_negatives": -1}, "--num-negatives"), ({"scorer_hidden": 0}, "--scorer-hidden"),
    ({"temperature": 0.0}, "--temperature"),
])
def test_r3m_config_rejects_bad_values_naming_the_flag(kwargs, flag):
    with pytest.raises(HRAlignError, match=flag):
        R3MConfig(**kwargs)


def test_config_temperature_defaults_and_resume_mismatch():
    assert R3MConfig().logit_temperature == 1.0
    assert R3MConfig(similarity="cosine").logit_temperature == 0.1
    assert R3MConfig(similarity="cosine", temperature=0.5).logit_temperature == 0.5
    # resume compares with the training layer's rule: --steps may change, --lr may not
    from hralign.train import RESUMABLE_FIELDS
    from hralign.train.rundir import config_differences

    saved = PretrainConfig(steps=10).to_dict()
    assert config_differences(saved, PretrainConfig(steps=20).to_dict(), RESUMABLE_FIELDS) == []
    assert [d[0] for d in config_differences(saved, PretrainConfig(lr=1.0).to_dict(), RESUMABLE_FIELDS)] == ["lr"]
    other = PretrainConfig(objective_config=R3MConfig(tcn_weight=0.5)).to_dict()
    assert [d[0] for d in config_differences(saved, other, RESUMABLE_FIELDS)] == ["tcn_weight"]
