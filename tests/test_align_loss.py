"""HR-Align loss: matches the formula of docs/design.md term by term; switches change what they should."""

import math

import pytest
import torch
import torch.nn.functional as F

from hralign.align.loss import frame_matching_loss, hralign_loss
from hralign.align.pooling import FramePooling, PoolingConfig
from hralign.errors import HRAlignError


def _formula(h, r, a, tau, frozen_negative=True, symmetric=True):
    """docs/design.md's sums written literally with exp (no log-sum-exp tricks)."""
    h, r, a = (F.normalize(x.double(), dim=-1) for x in (h, r, a))
    m = h.shape[0]
    s = lambda x, y: math.exp(float(x @ y) / tau)  # noqa: E731

    def side(q, k):
        total = 0.0
        for i in range(m):
            pos = s(q[i], k[i])
            den = pos + (s(q[i], r[i]) if frozen_negative else 0.0) + sum(s(q[i], k[j]) for j in range(m) if j != i)
            total += -math.log(pos / den)
        return total / m

    lh = side(h, a)
    return lh if not symmetric else 0.5 * (lh + side(a, h))


@pytest.mark.parametrize("frozen_negative", [True, False])
@pytest.mark.parametrize("symmetric", [True, False])
def test_loss_matches_design_formula(frozen_negative, symmetric):
    g = torch.Generator().manual_seed(0)
    h, r, a = (torch.randn(6, 16, generator=g) for _ in range(3))
    got = hralign_loss(h, r, a, temperature=0.1, frozen_negative=frozen_negative, symmetric=symmetric)
    assert float(got) == pytest.approx(_formula(h, r, a, 0.1, frozen_negative, symmetric), rel=1e-5)


def test_frozen_negative_penalises_adapted_not_closer_than_frozen():
    # a == r: the adapted feature is no closer to h than the frozen one, so the extra negative costs.
    g = torch.Generator().manual_seed(1)
    h, r = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    with_neg = hralign_loss(h, r, r.clone(), frozen_negative=True)
    without = hralign_loss(h, r, r.clone(), frozen_negative=False)
    assert float(with_neg) > float(without)


def test_gradient_moves_adapted_towards_human():
    g = torch.Generator().manual_seed(2)
    h, r = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g)
    a = r.clone().requires_grad_(True)
    opt = torch.optim.SGD([a], lr=0.5)
    before = F.cosine_similarity(h, a.detach()).mean()
    for _ in range(20):
        opt.zero_grad()
        hralign_loss(h, r, a).backward()
        opt.step()
    assert F.cosine_similarity(h, a.detach()).mean() > before + 0.2


def test_loss_rejects_mismatched_shapes_and_temperature():
    x = torch.randn(4, 8)
    with pytest.raises(HRAlignError, match="one shape"):
        hralign_loss(x, x, torch.randn(3, 8))
    with pytest.raises(HRAlignError, match="temperature"):
        hralign_loss(x, x, x, temperature=0.0)


def test_attention_pooling_weights_frames_by_instruction_query():
    pool = FramePooling(PoolingConfig("attention", text_dim=4, feature_dim=3))
    frames = torch.tensor([[[10.0, 0, 0], [0, 10.0, 0]]])  # (1, T=2, D=3)
    with torch.no_grad():
        pool.query.weight.zero_()
        pool.query.bias.copy_(torch.tensor([5.0, 0, 0]))  # the query prefers frame 0
    out = pool(frames, torch.zeros(1, 4))
    assert out[0, 0] > 9.0 and out[0, 1] < 1.0
    mean = FramePooling(PoolingConfig("mean"))(frames)
    assert torch.allclose(mean, frames.mean(1))
    with pytest.raises(HRAlignError):
        PoolingConfig("max")


def test_frame_matching_loss_is_relative_error_and_moves_only_the_adapted_side():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 3, 8, generator=g).requires_grad_(True)
    a = torch.randn(2, 3, 8, generator=g).requires_grad_(True)
    got = frame_matching_loss(h, a)
    assert float(got) == pytest.approx(float(((a - h) ** 2).sum() / (h ** 2).sum()), rel=1e-6)
    assert float(frame_matching_loss(h, h.detach().clone())) == 0.0
    # scale-free: the same relative error at 10x the feature scale
    assert float(frame_matching_loss(10 * h, 10 * a)) == pytest.approx(float(got), rel=1e-5)
    got.backward()
    assert h.grad is None and a.grad is not None and a.grad.abs().sum() > 0  # the human target is frozen
    with pytest.raises(HRAlignError, match="one shape"):
        frame_matching_loss(torch.randn(2, 3, 8), torch.randn(2, 4, 8))
