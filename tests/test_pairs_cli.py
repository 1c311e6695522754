"""`hralign pairs ...` happy paths: synth -> validate -> info, split to a copy, help texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import run_cli

from hralign.pairs import PairsFile
from hralign.pairs.validate import validate


def test_help_lists_every_command_with_an_example():
    code, out, _ = run_cli("pairs", "--help")
    assert code == 0
    for cmd in ("synth", "build", "validate", "info", "split"):
        assert f"  {cmd} " in out
        c, sub, _ = run_cli("pairs", cmd, "--help")
        assert c == 0 and "Example" in sub and "hralign pairs" in sub
    code, out, _ = run_cli("--help")
    assert code == 0 and "pairs" in out


def test_synth_validate_info(tmp_path):
    out = tmp_path / "d.h5"
    code, stdout, err = run_cli("pairs", "synth", "--out", str(out), "--num-tasks", "3", "--pairs-per-task", "2",
                                "--frames", "4", "--image-size", "16", "--seed", "5")
    assert code == 0, err
    assert "6 pairs" in stdout and out.exists()
    code, stdout, _ = run_cli("pairs", "validate", str(out))
    assert code == 0 and "valid (6 pairs, 3 tasks" in stdout
    code, stdout, _ = run_cli("pairs", "info", str(out))
    assert code == 0 and "6 pairs, 3 tasks" in stdout and "push the red block up" in stdout and "actions dim 4" in stdout
    code, stdout, _ = run_cli("pairs", "info", str(out), "--json")
    info = json.loads(stdout)
    assert info["domains"]["robot"]["frame_shape"] == [16, 16, 3] and info["split"] == {"train": 3, "val": 3}
    frames = PairsFile(out).read_frames("human", 0, 24).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(info["domains"]["human"]["pixel_mean"], frames.mean(0), atol=1e-3)  # all 24 frames sampled
    # refusing to clobber, and bad options, are one-line errors
    code, _, err = run_cli("pairs", "synth", "--out", str(out))
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("pairs", "synth", "--out", str(tmp_path / "x.h5"), "--num-tasks", "50")
    assert code == 2 and "`num_tasks`" in err and not (tmp_path / "x.h5").exists()


def test_split_writes_a_copy_and_leaves_the_input(tiny_pairs, tmp_path):
    before = tiny_pairs.read_bytes()
    out = tmp_path / "by_task.h5"
    code, stdout, err = run_cli("pairs", "split", str(tiny_pairs), "--val-fraction", "0.25", "--by", "task", "--out", str(out))
    assert code == 0, err
    assert tiny_pairs.read_bytes() == before
    assert validate(out) == []
    pf = PairsFile(out)
    tasks = pf.clip_tasks("human")[pf.pairs[:, 0]]
    val_tasks = set(tasks[pf.split == 1].tolist())
    assert len(val_tasks) == 1 and not val_tasks & set(tasks[pf.split == 0].tolist())
    np.testing.assert_array_equal(pf.read_clip("robot", 3), PairsFile(tiny_pairs).read_clip("robot", 3))
    code, _, err = run_cli("pairs", "split", str(tiny_pairs), "--out", str(out))
    assert code == 2 and "exists" in err
    code, _, err = run_cli("pairs", "split", str(tiny_pairs), "--out", str(out), "--overwrite", "--val-fraction", "0.5")
    assert code == 0
    split = PairsFile(out).split
    for k in range(4):  # by pair: round(0.5 * 3) = 2 validation pairs in every task, 1 left for training
        assert split[tasks == k].tolist().count(1) == 2


def test_info_reports_a_per_clip_split(tmp_path):
    from hralign.pairs import PairsWriter

    path = tmp_path / "human.h5"  # an import without pairs: its split is per clip
    with PairsWriter(path) as w:
        for k, split in enumerate([0, 1, 0, 0]):
            w.add_clip("human", np.full((2, 8, 8, 3), k, np.uint8), "wave", split=split)
    code, stdout, stderr = run_cli("pairs", "info", str(path))
    assert code == 0, stderr
    assert "split: human clips 3 train, 1 val (stored in /<domain>/clip_split)" in stdout
    assert "none stored" not in stdout
    code, stdout, _ = run_cli("pairs", "info", str(path), "--json")
    assert json.loads(stdout)["domains"]["human"]["clip_split"] == {"train": 3, "val": 1}


def test_val_fraction_default_is_the_one_constant():
    from hralign.pairs.split import DEFAULT_VAL_FRACTION

    code, stdout, _ = run_cli("pairs", "import", "folder", "--help")
    assert code == 0 and f"[default: {DEFAULT_VAL_FRACTION}]" in " ".join(stdout.split()).split("--val-fraction")[1][:400]
    docs = (Path(__file__).resolve().parents[1] / "docs" / "pairs.md").read_text()
    assert f"| `--val-fraction F`, `--seed S` | {DEFAULT_VAL_FRACTION}, 0 |" in docs
