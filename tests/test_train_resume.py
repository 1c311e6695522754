"""SIGKILL after a checkpoint, then --resume: bit-identical weights and metrics.jsonl to an uninterrupted run.

adapt's version of this test is tests/test_align_adapt.py::test_kill_after_checkpoint_then_resume_matches_uninterrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_LAM_ARGS, run_cli
from safetensors.torch import load_file


def kill_after_checkpoint(args: list[str], out: Path, timeout: float = 900) -> None:
    """Start `hralign ARGS` in a subprocess, SIGKILL it once a checkpoint exists under OUT/checkpoints."""
    # CPU results are bit-identical only at the same thread count: give the child this process's.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "hralign.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not list((out / "checkpoints").glob("step_*/state.pt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((out / "checkpoints").glob("step_*/state.pt")), "no checkpoint was written before the kill"


def assert_identical_runs(resumed: Path, straight: Path, weights: str) -> None:
    """Bit-identical weights; the same metrics lines, their floats equal to 1e-9 relative.

    The metrics are derived from the weights: a resume that trained differently changes them far more.
    Exact text equality failed once in CI under heavy load on the pretraining eval's participation
    ratio (2.63989802998741 vs 2.639898029987413, 1 ulp): numpy's LAPACK eigensolver on a threaded
    BLAS may split its work differently from run to run."""
    a, b = load_file(str(resumed / weights)), load_file(str(straight / weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    got = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    g, w = _leaves(got), _leaves(want)
    assert [k for k, _ in g] == [k for k, _ in w]
    different = [(k, x, y) for (k, x), (_, y) in zip(g, w) if not _close(x, y)]
    assert not different, different[:5]


def _close(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isclose(x, y, rel_tol=1e-9,
                                                                                            abs_tol=1e-12)
    return x == y


def _leaves(x, path: str = "") -> list:
    """(path, value) of every leaf of nested JSON, floats kept as floats (pytest.approx compares flat lists)."""
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _leaves(x[k], f"{path}/{k}")]
    if isinstance(x, list):
        return [leaf for i, v in enumerate(x) for leaf in _leaves(v, f"{path}/{i}")]
    return [(path, x)]


def killed_resumed_equals_straight(args: list[str], tmp_path: Path, written_at_end: str) -> None:
    """Kill ``hralign ARGS`` after its first checkpoint (``written_at_end`` must not exist yet), resume it,
    run it uninterrupted too: identical weights and metrics."""
    kill_after_checkpoint([*args, "--out", str(tmp_path / "killed")], tmp_path / "killed")
    assert not (tmp_path / "killed" / written_at_end).exists()  # killed before the end
    code, _, err = run_cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert code == 0, err
    code, _, err = run_cli(*args, "--out", str(tmp_path / "straight"))
    assert code == 0, err
    assert_identical_runs(tmp_path / "killed", tmp_path / "straight", "model.safetensors")


def test_lam_killed_then_resumed_equals_uninterrupted(tiny_pairs, tmp_path):
    args = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "60", *TINY_LAM_ARGS,
            "--checkpoint-every", "4", "--device", "cpu"]
    killed_resumed_equals_straight(args, tmp_path, "lam.json")


@pytest.mark.slow
def test_pretrain_killed_then_resumed_equals_uninterrupted(tiny_pairs, tmp_path):
    # the generator that draws batches and negatives is part of the checkpoint
    args = ["pretrain", "--pairs", str(tiny_pairs), "--encoder", "timm:resnet10t", "--image-size", "32", "--steps", "30",
            "--batch-size", "4", "--checkpoint-every", "2", "--log-every", "3", "--eval-every", "10",
            "--eval-frames", "2", "--text-encoder", "none", "--quiet", "--device", "cpu"]
    killed_resumed_equals_straight(args, tmp_path, "summary.json")


@pytest.mark.slow
def test_policy_killed_then_resumed_equals_uninterrupted(tiny_pairs, tmp_path):
    # two stages (latent tokens, then actions); before the fix a resumed run appended again the
    # metric lines written after the last checkpoint
    labels = tmp_path / "labels.h5"
    lam = tmp_path / "lam"
    assert run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(lam), "--gap", "2", "--steps", "2",
                   "--device", "cpu", *TINY_LAM_ARGS)[0] == 0
    assert run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(lam), "--out", str(labels))[0] == 0
    args = ["policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
            "--labels", str(labels), "--head", "continuous", "--latent-steps", "300", "--steps", "300",
            "--batch-size", "16", "--log-every", "7", "--checkpoint-every", "20", "--no-progress", "--device", "cpu"]
    killed_resumed_equals_straight(args, tmp_path, "model.safetensors")
