"""Two CPU processes under torchrun (gloo) train the same adapter as one process on the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt

# Adam is scale-invariant, so tiny float differences between a 2-way and a 1-way reduction can
# grow a little over steps; after 4 steps at lr 1e-3 they stay far below this.
TOLERANCE = 1e-5


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
                    reason="torchrun is not installed")
def test_two_process_run_matches_single_process(tiny_pairs, tmp_path):
    common = ["--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32", "--frames", "3",
              "--batch-size", "2", "--steps", "4", "--warmup", "1", "--eval-every", "0", "--save-every", "0",
              "--device", "cpu", "--lr", "1e-3", "--cache-dir", str(tmp_path / "cache")]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m", "hralign.cli.main",
                           "adapt", *common, "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_adapt(AdaptConfig(pairs=str(tiny_pairs), out=str(tmp_path / "single"), encoder="r3m-resnet18", image_size=32,
                          frames=3, batch_size=2, steps=4, warmup=1, eval_every=0, save_every=0, device="cpu", lr=1e-3,
                          cache_dir=str(tmp_path / "cache")), progress=False, echo=lambda *_: None)
    a = load_file(str(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "single" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert any(v.abs().sum() > 0 for v in b.values())
    for k in a:
        assert torch.allclose(a[k], b[k], atol=TOLERANCE), (k, (a[k] - b[k]).abs().max())
