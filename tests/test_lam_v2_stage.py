"""The v2 benchmark's LAM stage reports hralign.lam.measures on the evaluation file (cheap: tiny synthetic
pairs and the tiny LAM, no MetaWorld)."""

from __future__ import annotations

import json

from conftest import run_cli

from hralign_bench.v2 import lam_measures_stage


def test_v2_lam_stage_measures_the_lam_on_the_eval_file_and_caches_them(tiny_lam, tiny_pairs, tmp_path):
    lam_dir = tiny_lam[0]
    labels = tmp_path / "lam_labels.h5"
    assert run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--out", str(labels))[0] == 0
    target = tmp_path / "lam_measures.json"
    res = lam_measures_stage(target, tiny_pairs, labels, lam_dir)
    assert {"probe", "nmi", "knn", "reconstruction"} <= set(res)
    p = res["probe"]["robot"]
    assert {"action_probe_r2", "action_probe_r2_shuffled", "action_probe_r2_proprio", "action_probe_r2_with_proprio"} <= set(p)
    assert res["reconstruction"]["robot"]["eval_pairs"] <= 256 and "explained_vs_copy" in res["reconstruction"]["robot"]
    assert json.loads(target.read_text()) == res
    # a resume reads the cached figures instead of measuring again
    target.write_text(json.dumps({"cached": True}))
    assert lam_measures_stage(target, tiny_pairs, labels, lam_dir) == {"cached": True}
