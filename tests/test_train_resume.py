"""SIGKILL after a checkpoint, then --resume: bit-identical weights and metrics.jsonl to an uninterrupted run.

adapt's version of this test is tests/test_align_adapt.py::test_kill_after_checkpoint_then_resume_matches_uninterrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import TINY_LAM_ARGS, run_cli
from safetensors.torch import load_file


def kill_after_checkpoint(args: list[str], out: Path, timeout: float = 180) -> None:
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
    a, b = load_file(str(resumed / weights)), load_file(str(straight / weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()


def test_lam_killed_then_resumed_equals_uninterrupted(tiny_pairs, tmp_path):
    args = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "60", *TINY_LAM_ARGS,
            "--checkpoint-every", "4", "--device", "cpu"]
    kill_after_checkpoint([*args, "--out", str(tmp_path / "killed")], tmp_path / "killed")
    assert not (tmp_path / "killed" / "lam.json").exists()  # killed before the end
    code, _, err = run_cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert code == 0, err
    code, _, err = run_cli(*args, "--out", str(tmp_path / "straight"))
    assert code == 0, err
    assert_identical_runs(tmp_path / "killed", tmp_path / "straight", "model.safetensors")
