"""Two CPU processes (gloo) against one process on the same global batch: the same weights after N steps.

Every trainer splits global batch ``f(seed, step)`` into equal per-process shares and computes its
loss as the one-process loss on the global batch (negatives, BatchNorm and codebook statistics are
gathered across processes; masked means divide by the global count), so the weights agree up to
the order of float reductions. TOLERANCE is the largest absolute weight difference allowed after
the few steps each test runs at lr 1e-3 (Adam divides by the gradient's running scale, so rounding
differences are not shrunk by the lr); pretrain's ResNet allows 1e-4, for the measured reason its
test states. One test goes through `accelerate launch`, the others through `torchrun`; each also
checks that resuming the 2-process run in 1 process is refused (one line, nothing written).
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


def assert_same_weights(a: dict, b: dict, tolerance: float = TOLERANCE) -> None:
    assert a.keys() == b.keys()
    assert any(v.float().abs().sum() > 0 for v in b.values())
    for k in a:
        diff = (a[k].float() - b[k].float()).abs().max().item() if a[k].numel() else 0.0
        assert diff <= tolerance, (k, diff)


def assert_other_world_size_refused(common: list[str], out: Path) -> None:
    """Resuming a 2-process run in 1 process: exit 2, one line naming both counts, nothing written."""
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    code, _, err = run_cli(*common, "--out", str(out), "--resume", "--steps", "9")
    assert code == 2 and "2 process(es), this run has 1" in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_adapt_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    common = ["adapt", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32", "--frames", "3",
              "--batch-size", "4", "--steps", "4", "--warmup", "1", "--eval-every", "0", "--checkpoint-every", "0",
              "--device", "cpu", "--lr", "1e-3", "--cache-dir", str(tmp_path / "cache")]
    proc = launch("torchrun", [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert_same_weights(load_file(str(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors")),
                        load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors")))
    # the run records its processes; resuming it with another count is refused, nothing written
    assert_other_world_size_refused(common, tmp_path / "ddp")


def test_lam_two_processes_match_one_accelerate_launch(tiny_pairs, tmp_path):
    # the quantiser sees the global batch in both runs: codebook init, usage, dead-code restarts
    # (every 2 steps here) and NSVQ noise are those of one process
    common = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "6", *TINY_LAM_ARGS,
              "--restart-every", "2", "--device", "cpu", "--lr", "1e-3"]
    proc = launch("accelerate", [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert_same_weights(load_file(str(tmp_path / "ddp" / "model.safetensors")),
                        load_file(str(tmp_path / "one" / "model.safetensors")))
    assert_other_world_size_refused(common, tmp_path / "ddp")


@pytest.mark.slow
def test_pretrain_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # a ResNet in training mode: its BatchNorm layers normalise with the global batch's statistics
    # (gathered in the layout of the one-process tensor), and R3M's negatives are drawn from the whole batch
    common = ["pretrain", "--pairs", str(tiny_pairs), "--encoder", "timm:resnet10t", "--image-size", "32", "--steps", "3",
              "--batch-size", "4", "--eval-every", "0", "--eval-frames", "2", "--text-encoder", "none", "--quiet",
              "--device", "cpu"]
    proc = launch("torchrun", [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    # The first update's gradients agree to ~1.5e-6 relative; AdamW then divides each step by the
    # gradient's scale, so a weight whose gradient is ~0 (timm's zero-initialised last BatchNorm of
    # each block: a gradient of 8.4e-8 in one run, 7.0e-8 in the other) moves by lr * g / (|g| + eps)
    # and the rounding decides that step. Measured after 3 steps at lr 1e-3: 2.6e-5 (layer4 downsample);
    # before BatchNorm's input kept its channels-last layout, 3.4e-3 (docs/training.md).
    # Tolerance: a tenth of the lr. Without the language term: its scorer's first layer has thousands
    # of weights with ~0 gradients (3.1e-3 measured with --text-encoder minilm).
    assert_same_weights(load_file(str(tmp_path / "ddp" / "model.safetensors")),
                        load_file(str(tmp_path / "one" / "model.safetensors")), tolerance=1e-4)
    assert_other_world_size_refused(common, tmp_path / "ddp")


@pytest.mark.slow
def test_policy_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # R3M's BatchNorm MLP: BatchNorm over the global batch (SyncBatchNorm is GPU-only)
    common = ["policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
              "--head", "continuous", "--future-features", "3", "--steps", "8", "--batch-size", "16", "--no-progress",
              "--device", "cpu"]
    proc = launch("torchrun", [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert_same_weights(load_file(str(tmp_path / "ddp" / "model.safetensors")),
                        load_file(str(tmp_path / "one" / "model.safetensors")))
    assert_other_world_size_refused(common, tmp_path / "ddp")


@pytest.mark.slow
def test_gr1_two_processes_match_one_torchrun(tiny_pairs, tmp_path):
    # both GR-1 stages; no dropout (each process would draw its own masks for its share of the batch).
    # The action / future losses are means over non-padded / valid positions, whose count differs per
    # share: each share's sum is divided by the global count (Session.masked_mean). Before that
    # action_head.out.bias differed by 2.2e-5.
    common = ["policy", "train", "--kind", "gr1", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
              "--image-size", "32", "--history", "3", "--dim", "32", "--heads", "2", "--dropout", "0",
              "--pretrain-steps", "3", "--steps", "4", "--batch-size", "8", "--lr", "1e-3", "--no-progress",
              "--device", "cpu"]
    proc = launch("torchrun", [*common, "--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, _, err = run_cli(*common, "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert_same_weights(load_file(str(tmp_path / "ddp" / "model.safetensors")),
                        load_file(str(tmp_path / "one" / "model.safetensors")))
    assert_other_world_size_refused(common, tmp_path / "ddp")
