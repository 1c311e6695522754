"""`hralign adapt --terms`: soft-DTW, Sinkhorn and MMD objectives (values, descent, resume, bad options)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from hralign.align.config import AdaptConfig
from hralign.align.loss import frame_matching_loss, mmd_rbf, sinkhorn_divergence, soft_dtw_divergence
from hralign.align.terms import ALIGN_TERMS, parse_term_options, parse_terms, term_losses
from hralign.align.trainer import run_adapt
from hralign.errors import HRAlignError

LOSSES = {"softdtw": soft_dtw_divergence, "sinkhorn": sinkhorn_divergence, "mmd": mmd_rbf}
FAST = dict(encoder="r3m-resnet18", image_size=32, frames=3, batch_size=2, steps=6, warmup=2, eval_every=0,
            checkpoint_every=3, log_every=1, device="cpu", lr=1e-3)


def _frames(seed: int, b: int = 4, t: int = 5, d: int = 16) -> torch.Tensor:
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed)).relu() + 0.1


def test_registry_is_the_losses_here():
    assert {name: term.loss for name, term in ALIGN_TERMS.items()} == LOSSES


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_for_identical_positive_otherwise_and_scale_free(name):
    f = LOSSES[name]
    h = _frames(0)
    a = h.clone().requires_grad_()
    zero = f(h, a)
    zero.backward()
    assert abs(float(zero.detach())) < 1e-6 and float(a.grad.abs().max()) < 1e-5
    other = _frames(1)
    value = float(f(h, other))
    assert value > 1e-3
    # relative to the human features' energy: scaling both sets leaves the value
    assert float(f(10 * h, 10 * other)) == pytest.approx(value, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_decreases_over_a_few_steps_on_a_fixed_batch(name):
    torch.manual_seed(0)
    h, x = _frames(0), _frames(2)
    layer = torch.nn.Linear(16, 16)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    values = []
    for _ in range(15):
        opt.zero_grad()
        loss = LOSSES[name](h, layer(x))
        loss.backward()
        opt.step()
        values.append(float(loss))
    assert values[-1] < 0.7 * values[0], values


def test_softdtw_tolerates_a_time_warp_that_the_frame_term_does_not():
    h = _frames(0, b=2, t=8)
    warped = torch.cat([h[:, :1], h[:, :-1]], dim=1)  # one frame late: a monotone warp of h
    unrelated = _frames(3, b=2, t=8)
    dtw_warp, dtw_other = float(soft_dtw_divergence(h, warped, gamma=0.01)), float(soft_dtw_divergence(h, unrelated, gamma=0.01))
    frame_warp, frame_other = float(frame_matching_loss(h, warped)), float(frame_matching_loss(h, unrelated))
    assert dtw_warp < 0.35 * dtw_other  # DTW: only the last frame is unmatched
    assert frame_warp > 0.5 * frame_other  # per-frame: the whole clip looks wrong
    assert dtw_warp >= -1e-6


@pytest.mark.parametrize("name", ["sinkhorn", "mmd"])
def test_distribution_terms_ignore_the_pairing(name):
    h = _frames(0)
    shuffled = h.flatten(0, 1)[torch.randperm(20, generator=torch.Generator().manual_seed(0))].view(4, 5, 16)
    assert abs(float(LOSSES[name](h, shuffled))) < 1e-5
    assert float(frame_matching_loss(h, shuffled)) > 0.1


def test_sinkhorn_is_the_transport_cost_of_a_translation():
    # every point moved by the same c: optimal transport costs |c|^2 (relative to the human energy)
    h = torch.tensor([[[0.0, 1.0], [4.0, 1.0], [0.0, 5.0]]])
    c = torch.tensor([0.3, -0.2])
    scale = float(h.pow(2).sum(-1).mean())
    got = float(sinkhorn_divergence(h, h + c, epsilon=1e-3, iterations=200))
    assert got == pytest.approx(float(c.pow(2).sum()) / scale, rel=0.02)


def test_mmd_matches_the_kernel_sums_written_out():
    h, a = _frames(0, b=2, t=3, d=4), _frames(5, b=2, t=3, d=4)
    s = math.sqrt(float(h.pow(2).sum(-1).mean()))
    x, y = (a / s).flatten(0, 1).double(), (h / s).flatten(0, 1).double()
    d_hh = [float((y[i] - y[j]).pow(2).sum()) for i in range(6) for j in range(6) if i != j]
    med = sorted(d_hh)[(len(d_hh) - 1) // 2]  # torch.median: the lower middle value
    bws = (0.5, 2.0)

    def k(u, v):
        d2 = float((u - v).pow(2).sum())
        return sum(math.exp(-d2 / (b * med)) for b in bws) / len(bws)

    mean = lambda p, q: sum(k(u, v) for u in p for v in q) / (len(p) * len(q))  # noqa: E731
    want = mean(x, x) + mean(y, y) - 2 * mean(x, y)
    assert float(mmd_rbf(h, a, bandwidths=bws)) == pytest.approx(want, rel=1e-4)


def test_parse_terms_and_options():
    assert parse_terms("softdtw=1, mmd=0.5") == {"softdtw": 1.0, "mmd": 0.5}
    assert parse_terms("") == {}
    opts = parse_term_options('{"sinkhorn": {"epsilon": 0.2}}', {"sinkhorn": 1.0, "mmd": 1.0})
    assert opts == {"sinkhorn": {"epsilon": 0.2, "iterations": 50}, "mmd": {"bandwidths": [0.25, 0.5, 1.0, 2.0, 4.0]}}
    got = term_losses({"softdtw": 1.0, "mmd": 0.0}, parse_term_options(None, {"softdtw": 1.0, "mmd": 0.0}),
                      _frames(0), _frames(1))
    assert set(got) == {"softdtw"}  # a zero weight computes nothing
    assert float(got["softdtw"]) == pytest.approx(float(soft_dtw_divergence(_frames(0), _frames(1))))


@pytest.mark.parametrize("terms,options,message", [
    ("mmd=-1", None, "non-negative weight"),
    ("mmd=inf", None, "finite"),
    ("ot=1", None, "among softdtw, sinkhorn, mmd"),
    ("mmd", None, "NAME=WEIGHT"),
    ("mmd=1,mmd=2", None, "twice"),
    ("mmd=1", '{"softdtw": {"gamma": 1}}', "does not name"),
    ("softdtw=1", '{"softdtw": {"beta": 1}}', "no option 'beta'"),
    ("softdtw=1", '{"softdtw": {"gamma": -0.1}}', "positive"),
    ("sinkhorn=1", '{"sinkhorn": {"iterations": 2.5}}', "integer"),
    ("mmd=1", '{"mmd": {"bandwidths": []}}', "positive"),
    ("mmd=1", "[1]", "JSON object"),
])
def test_bad_options_are_one_line_exit_2(terms, options, message, tiny_pairs, tmp_path):
    with pytest.raises(HRAlignError, match="--term"):
        AdaptConfig(pairs=str(tiny_pairs), out=str(tmp_path / "cfg"), terms=terms, term_options=options)
    args = ["adapt", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "run"), "--terms", terms]
    code, _, err = run_cli(*args, *(["--term-options", options] if options else []))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and message in err, err
    assert not (tmp_path / "run").exists()


def _entries(run) -> list[dict]:
    return [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_adapt_trains_logs_and_resumes_exactly_with_the_term(name, tiny_pairs, tmp_path, monkeypatch):
    import hralign.align.trainer as trainer
    from safetensors.torch import load_file

    def cfg(out, **kw):
        return AdaptConfig(pairs=str(tiny_pairs), out=str(tmp_path / out), cache_dir=str(tmp_path / "cache"),
                           terms=f"{name}=2", **{**FAST, **kw})

    run_adapt(cfg("straight"), progress=False, echo=lambda *_: None)
    entries = _entries(tmp_path / "straight")
    assert len(entries) == FAST["steps"] and all(e[f"{name}_loss"] >= -1e-6 for e in entries)
    assert all(e["loss"] >= 2 * e[f"{name}_loss"] for e in entries)  # HR-Align's loss is still there
    # interrupted after the checkpoint of step 3, then resumed: the same run
    real, calls = trainer.term_losses, {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("interrupted")
        return real(*a, **k)

    monkeypatch.setattr(trainer, "term_losses", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_adapt(cfg("resumed"), progress=False, echo=lambda *_: None)
    monkeypatch.setattr(trainer, "term_losses", real)
    saved = sorted(c.name for c in (tmp_path / "resumed" / "checkpoints").glob("step_*"))
    assert saved == ["step_00000003"] and not (tmp_path / "resumed" / "adapter").exists()
    run_adapt(cfg("resumed", resume=True), progress=False, echo=lambda *_: None)
    a = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _entries(tmp_path / "resumed") == entries
