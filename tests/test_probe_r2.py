"""The action probe R² has one definition (hralign.metrics.action_probe_r2) and one number in every report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from hralign.errors import HRAlignError
from hralign.metrics import action_probe_r2


def test_finds_a_linear_signal_and_not_a_shuffled_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = np.stack([x[:, 0] - 2 * x[:, 3], np.zeros(400)], 1) + 0.1 * rng.normal(size=(400, 2)) * [1, 0]
    res = action_probe_r2(x, y, groups=np.repeat(np.arange(40), 10))
    assert res["action_probe_r2"] > 0.9 and res["action_probe_r2_shuffled"] < 0.1
    assert res["target_columns"] == [0]  # the constant column is dropped
    assert res["folds"] == 5 and res["clips"] == 40
    # scale-free: summed and mean actions over a gap give the same R²
    assert action_probe_r2(x, 3 * y, np.repeat(np.arange(40), 10))["action_probe_r2"] == pytest.approx(res["action_probe_r2"], abs=1e-9)


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": np.zeros(20)}, "at least 2 clips"),
    ({"groups": np.arange(5)}, "groups"),
    ({"targets": np.ones((20, 2))}, "constant"),
    ({"folds": 1}, "folds"),
])
def test_bad_input_is_one_line(kwargs, match):
    args = {"latents": np.random.default_rng(0).normal(size=(20, 3)),
            "targets": np.random.default_rng(1).normal(size=(20, 2)), "groups": np.arange(20) // 4, **kwargs}
    with pytest.raises(HRAlignError, match=match):
        action_probe_r2(**args)


def test_analyze_and_lam_eval_report_the_same_number(tiny_pairs, tiny_lam, tmp_path):
    """Same LAM latents of the same robot frame pairs: `analyze` and `lam eval` print one number."""
    lam_dir = str(tiny_lam[0])
    code, _, err = run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", lam_dir, "--out", str(tmp_path / "l.h5"))
    assert code == 0, err
    code, out, err = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", str(tmp_path / "l.h5"), "--json")
    assert code == 0, err
    from_lam = json.loads(out)["probe"]["action_probe_r2"]
    code, _, err = run_cli("analyze", "--pairs", str(tiny_pairs), "--encoder", f"lam:{lam_dir}", "--no-umap", "--k", "4",
                           "--out", str(tmp_path / "report"))
    assert code == 0, err
    from_analyze = json.loads((tmp_path / "report" / "metrics.json").read_text())["views"]["frozen"]["action_probe_r2"]
    assert from_analyze == pytest.approx(from_lam, abs=1e-6)
