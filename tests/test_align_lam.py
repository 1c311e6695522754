"""`hralign adapt --encoder lam:DIR`: HR-Align on frame pairs (x_t, x_{t+gap}) of a latent action model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt


@pytest.fixture(scope="session")
def lam_dir(tiny_lam):
    return tiny_lam[0]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_adapt_a_lam_cached_equals_plain_and_adapter_loads(lam_dir, tiny_pairs, tmp_path):
    import hralign

    common = dict(pairs=str(tiny_pairs), encoder=f"lam:{lam_dir}", method="bottleneck",
                  adapter_options='{"groups": 1}', frames=3, batch_size=2, steps=4, warmup=1, eval_every=0,
                  checkpoint_every=0, log_every=1, device="cpu", lr=1e-3, cache_dir=str(tmp_path / "cache"))
    run_adapt(AdaptConfig(out=str(tmp_path / "cached"), **common), progress=False, echo=lambda *_: None)
    run_adapt(AdaptConfig(out=str(tmp_path / "plain"), cache=False, **common), progress=False, echo=lambda *_: None)
    cached = [m["loss"] for m in _metrics(tmp_path / "cached") if "loss" in m]
    plain = [m["loss"] for m in _metrics(tmp_path / "plain") if "loss" in m]
    assert len(cached) == 4 and np.allclose(cached, plain, atol=1e-4)
    cfg = json.loads((tmp_path / "cached" / "run.json").read_text())
    assert cfg["resolved"]["path"] == "cached"
    enc = hralign.load_encoder(str(tmp_path / "cached" / "adapter"))
    pairs_in = torch.randint(0, 255, (3, 2, 32, 32, 3), dtype=torch.uint8)  # (B, 2, H, W, 3) frame pairs
    assert enc(pairs_in).shape == (3, enc.feature_dim)

