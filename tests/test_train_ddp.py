"""Two CPU processes (gloo) against one process on the same global batch: the same weights after N steps.

Every trainer splits global batch ``f(seed, step)`` into equal per-process shares and computes its
loss as the one-process loss on the global batch (negatives, BatchNorm and codebook statistics are
gathered across processes; masked means divide by the global count), so the weights agree up to
the order of float reductions. TOLERANCE is the largest absolute weight difference allowed after
the few steps each test runs at lr 1e-3 (Adam divides by the gradient's running scale, so rounding
differences are not shrunk by the lr); GR-1 and pretrain's ResNet allow 0.1% of their weights
beyond it (none beyond one lr step), for the measured reason their tests state. One test goes
through `accelerate launch`, the others through `torchrun`; each also checks that resuming the
2-process run in 1 process is refused (one line, nothing written).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_LAM_ARGS, run_cli
from safetensors.torch import load_file

TOLERANCE = 1e-5
BIN = Path(sys.executable).parent


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(launcher: str, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `hralign ARGS` in 2 CPU processes under ``torchrun`` or ``accelerate launch``."""
    if launcher == "torchrun":
        cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", _free_port()]
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([*cmd, "-m", "hralign.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_same_weights(a: dict, b: dict, tolerance: float = TOLERANCE, share: float = 0.0,
                        bound: float | None = None) -> None:
    """Every weight within ``tolerance``; or, with ``share``, all but that share of the weights within it
    and every one within ``bound`` (AdamW on a gradient near its eps: see the GR-1 and pretrain tests)."""
    assert a.keys() == b.keys()
    assert any(v.float().abs().sum() > 0 for v in b.values())
    apart = 0
    for k in a:
        d = (a[k].float() - b[k].float()).abs()
        diff = d.max().item() if a[k].numel() else 0.0
        assert diff <= (tolerance if bound is None else bound), (k, diff)
        apart += int((d > tolerance).sum())
    assert apart <= share * sum(v.numel() for v in b.values()), f"{apart} weights more than {tolerance} apart"


def assert_other_world_size_refused(common: list[str], out: Path) -> None:
    """Resuming a 2-process run in 1 process: exit 2, one line naming both counts, nothing written."""
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    code, _, err = run_cli(*common, "--out", str(out), "--resume", "--steps", "9")
    assert code == 2 and "2 process(es), this run has 1" in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def two_vs_one(launcher: str, common: list[str], tmp_path: Path, weights: str = "model.safetensors", **tolerance) -> None:
    """The whole check: ``common`` in 2 processes and in 1, the same weights (``weights`` in each run
    dir, within ``tolerance``: see :func:`assert_same_weights`), and the 2-process run's resume in 1
    process refused with nothing written."""
    proc = launch(launcher, [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert_same_weights(load_file(str(tmp_path / "ddp" / weights)), load_file(str(tmp_path / "one" / weights)), **tolerance)
    assert_other_world_size_refused(common, tmp_path / "ddp")


def test_adapt_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    common = ["adapt", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32", "--frames", "3",
              "--batch-size", "4", "--steps", "4", "--warmup", "1", "--eval-every", "0", "--checkpoint-every", "0",
              "--device", "cpu", "--lr", "1e-3", "--cache-dir", str(tmp_path / "cache")]
    two_vs_one("torchrun", common, tmp_path, weights="adapter/adapter_model.safetensors")


def test_lam_two_processes_match_one_accelerate_launch(tiny_pairs, tmp_path):
    # the quantiser sees the global batch in both runs: codebook init, usage, dead-code restarts
    # (every 2 steps here) and NSVQ noise are those of one process
    common = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "6", *TINY_LAM_ARGS,
              "--restart-every", "2", "--device", "cpu", "--lr", "1e-3"]
    two_vs_one("accelerate", common, tmp_path)


@pytest.mark.slow
def test_pretrain_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # a ResNet in training mode: its BatchNorm layers normalise with the global batch's statistics
    # (gathered in the layout of the one-process tensor), and R3M's negatives are drawn from the whole batch
    common = ["pretrain", "--pairs", str(tiny_pairs), "--encoder", "timm:resnet10t", "--image-size", "32", "--steps", "3",
              "--batch-size", "4", "--eval-every", "0", "--eval-frames", "2", "--text-encoder", "none", "--quiet",
              "--device", "cpu"]
    # The first update's gradients agree to ~1.5e-6 relative; AdamW then divides each step by the
    # gradient's scale, so a weight whose gradient is ~0 (timm's zero-initialised last BatchNorm of
    # each block: a gradient of 8.4e-8 in one run, 7.0e-8 in the other) moves by lr * g / (|g| + eps)
    # and the rounding decides that step; such a weight scales a whole residual branch. Measured after
    # 3 steps at lr 1e-3: max 2.6e-5 (1 thread in both runs) and 1.2e-4 (this test: 2 threads in the
    # one-process run); with 1 thread 2 of the 4.9M weights were more than 1e-5 apart. Before BatchNorm's input
    # kept its channels-last layout: max 3.4e-3, 19% of the weights more than 1e-5 apart (docs/training.md).
    # Tolerance: at most 0.1% of the weights more than 1e-5 apart, none more than one lr step (1e-3).
    # Without the language term: its scorer's first layer has thousands of weights with ~0 gradients.
    two_vs_one("torchrun", common, tmp_path, share=1e-3, bound=1e-3)


@pytest.mark.slow
def test_policy_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # R3M's BatchNorm MLP: BatchNorm over the global batch (SyncBatchNorm is GPU-only)
    common = ["policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
              "--head", "continuous", "--future-features", "3", "--steps", "8", "--batch-size", "16", "--no-progress",
              "--device", "cpu"]
    two_vs_one("torchrun", common, tmp_path)


@pytest.mark.slow
def test_gr1_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # both GR-1 stages; no dropout (each process would draw its own masks for its share of the batch).
    # The action / future losses are means over non-padded / valid positions, whose count differs per
    # share: each share's sum is divided by the global count (Session.masked_mean). With per-share
    # means (and the key bias's noise) 90% of the 74k weights ended more than 1e-5 apart (max 6.8e-3).
    # Now the gradients agree to ~1e-7 relative, and the weights to 1.5e-7 but for one: a weight of
    # future_head.proj whose gradient at the first step of stage 2 nearly cancels (9.1e-10 vs 8.5e-10 in
    # the two runs), so AdamW's first step lr * g / (|g| + eps) differs by 4.7e-6 (1 thread in both
    # runs) or 1.6e-5 (this test: 2 threads in the one-process run). Tolerance: all but 0.1% of the
    # weights within 1e-5, none more than one lr step (1e-3) apart.
    common = ["policy", "train", "--kind", "gr1", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
              "--image-size", "32", "--history", "3", "--dim", "32", "--heads", "2", "--dropout", "0",
              "--pretrain-steps", "3", "--steps", "4", "--batch-size", "8", "--lr", "1e-3", "--warmup", "0",
              "--lr-schedule", "constant", "--no-progress",
              "--device", "cpu"]
    two_vs_one("torchrun", common, tmp_path, share=1e-3, bound=1e-3)
