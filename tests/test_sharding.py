"""Encoding every frame of clips once (hralign.encoders.clips) and sharding it over processes (hralign.shard).

N processes must write the same file as one: labels and feature caches are compared bit for bit
(tolerance 0), because each process runs exactly the batches one process would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hralign.encoders.clips import encode_clips, plan_batches, read_units, shard_clips, unit_counts
from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.shard import Shard, current_shard, gather_parts

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
needs_torchrun = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
needs_accelerate = pytest.mark.skipif(not os.path.exists(ACCELERATE), reason="accelerate's launcher is not installed")


def _mean_rgb(x: torch.Tensor) -> torch.Tensor:
    """A deterministic toy encoder: per-unit mean colour (B, 3) (frame pairs: both frames, (B, 6))."""
    return x.float().flatten(1, -2).mean(1) if x.ndim == 4 else x.float().flatten(2, -2).mean(2).flatten(1)


def test_plan_batches_groups_whole_clips():
    assert plan_batches([3, 3, 3, 3, 1], 5) == [[0, 1], [2, 3], [4]]
    assert plan_batches([], 4) == []
    assert plan_batches([10, 0, 2], 4) == [[0], [1, 2]]
    with pytest.raises(HRAlignError, match="batch_size"):
        plan_batches([1], 0)


@pytest.mark.parametrize("n,world", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shard_bounds_cover_everything_once(n, world):
    spans = [Shard(r, world).bounds(n) for r in range(world)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert max(hi - lo for lo, hi in spans) - min(hi - lo for lo, hi in spans) <= 1


def test_shard_rejects_bad_ranks():
    with pytest.raises(HRAlignError, match="rank 2 of world size 2"):
        Shard(2, 2)
    assert current_shard() == Shard(0, 1)  # no launcher in the test process


def test_encode_clips_frames_and_pairs(tiny_pairs):
    pf = PairsFile(tiny_pairs)
    clips = [2, 0, 1]
    feats = encode_clips(_mean_rgb, pf, "robot", clips, batch_size=5)
    for c, f in zip(clips, feats):
        frames = pf.read_clip("robot", c)
        assert torch.equal(f, _mean_rgb(torch.from_numpy(frames)))
    pairs = encode_clips(_mean_rgb, pf, "human", [0], gap=3, batch_size=4)[0]
    assert pairs.shape == (pf.clip_lengths("human")[0] - 3, 6)
    assert read_units(pf, "human", 0, 3).shape[1] == 2
    assert list(unit_counts(pf, "human", [0, 1], gap=3)) == list(pf.clip_lengths("human")[[0, 1]] - 3)
    with pytest.raises(HRAlignError, match="clip ids"):
        encode_clips(_mean_rgb, pf, "human", [10_000])
    with pytest.raises(HRAlignError, match="expected a tensor"):
        encode_clips(lambda x: x.numpy(), pf, "human", [0])


def test_shards_of_a_real_encoder_are_bit_identical(tiny_pairs):
    """Union of the shards' outputs == the single-process output, exactly (same batches run)."""
    import hralign

    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    pf = PairsFile(tiny_pairs)
    clips = list(range(pf.num_clips("robot")))
    whole = encode_clips(enc, pf, "robot", clips, batch_size=12)
    parts = []
    for r in range(3):
        lo, hi = shard_clips(pf, "robot", clips, Shard(r, 3), batch_size=12)
        parts += encode_clips(enc, pf, "robot", clips[lo:hi], batch_size=12)
    assert len(parts) == len(whole)
    assert all(torch.equal(a, b) for a, b in zip(parts, whole))


def test_gather_parts_merges_in_rank_order(tmp_path, monkeypatch):
    monkeypatch.setattr(Shard, "barrier", lambda self: None)  # the processes are simulated in turn
    assert gather_parts({"x": np.ones(2)}, tmp_path / "w", Shard()) is not None  # alone: returned as is
    assert gather_parts({"x": np.arange(3.0), "y": np.zeros((0, 0))}, tmp_path / "w", Shard(1, 2)) is None
    merged = gather_parts({"x": np.arange(2.0), "y": np.ones((1, 2))}, tmp_path / "w", Shard(0, 2))
    assert list(merged["x"]) == [0.0, 1.0, 0.0, 1.0, 2.0]
    assert merged["y"].shape == (1, 2)
    assert not (tmp_path / "w").exists()


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@needs_torchrun
def test_lam_label_two_processes_write_the_same_file(tiny_pairs, tiny_lam, tmp_path):
    import h5py

    lam_dir = tiny_lam[0]
    common = ["--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--batch-size", "7", "--device", "cpu"]
    out = _run([TORCHRUN, "--nproc_per_node", "2", "--master_port", "29541", "-m", "hralign.cli.main", "lam", "label",
                *common, "--out", str(tmp_path / "two.h5")])
    assert out.count("wrote") == 1, out  # the processes really were 2 shards: only the main one reports
    # one process in the same environment (thread count changes float summation order, not sharding)
    _run([sys.executable, "-m", "hralign.cli.main", "lam", "label", *common, "--out", str(tmp_path / "one.h5")])
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "two.h5", "r") as b:
        assert dict(a.attrs) == dict(b.attrs)
        for d in ("human", "robot"):
            assert len(a[d]["t"]) > 7  # several batches, so the shards really split the work
            for k in ("codes", "latents", "clip", "t"):
                assert np.array_equal(a[d][k][()], b[d][k][()]), (d, k)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "two.h5"]  # no part files left


CACHE_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import hralign
    from hralign.align.features import build_feature_cache
    from hralign.pairs import PairsFile
    from hralign.shard import current_shard
    import torch

    pairs, out = PairsFile(sys.argv[1]), Path(sys.argv[2])
    frozen = hralign.load_encoder("r3m-resnet18", image_size=32)
    adapted = hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=32), "lora", placement="middle")
    stage = adapted.first_adapted_stage
    cache = build_feature_cache(pairs, frozen, adapted, stage, list(range(pairs.num_clips("human"))),
                                list(range(pairs.num_clips("robot"))), torch.device("cpu"), out, batch_frames=10,
                                progress=False, shard=current_shard())
    assert cache.robot_trunk.shape[0] == cache.robot_feat.shape[0]
    print(current_shard())
""")


@pytest.mark.slow
@needs_accelerate
def test_feature_cache_two_processes_write_the_same_file(tiny_pairs, tmp_path):
    from safetensors.numpy import load_file

    script = tmp_path / "cache.py"
    script.write_text(CACHE_SCRIPT)
    # through `accelerate launch` (the lam label test goes through torchrun): both launchers shard
    out = _run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29542",
                str(script), str(tiny_pairs), str(tmp_path / "two.safetensors")])
    assert "Shard(rank=1, world=2)" in out, out
    _run([sys.executable, str(script), str(tiny_pairs), str(tmp_path / "one.safetensors")])
    a, b = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert a.keys() == b.keys() == {"human_feat", "robot_feat", "robot_trunk"}
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert (tmp_path / "one.json").read_text() == (tmp_path / "two.json").read_text()


def test_analyze_encoder_pass_shards_merge_to_the_one_process_latents(tiny_pairs, tmp_path, monkeypatch):
    """``hralign analyze``'s encoder pass: shards simulated in turn (rank 1, then the main rank 0)
    give the main process exactly the per-clip latents one process computes."""
    from hralign.analysis.config import AnalyzeConfig
    from hralign.analysis.run import _encode

    monkeypatch.setattr(Shard, "barrier", lambda self: None)
    pf = PairsFile(tiny_pairs)
    cfg = AnalyzeConfig(pairs=str(tiny_pairs), out=str(tmp_path / "r"), encoder="x", batch_size=5, progress=False)
    enc = torch.nn.Module()
    enc.forward = _mean_rgb
    clips = np.arange(pf.num_clips("robot"))
    one = _encode(enc, pf, "robot", clips, 2, cfg, None, "frozen robot")
    assert _encode(enc, pf, "robot", clips, 2, cfg, None, "frozen robot", Shard(1, 2)) is None
    two = _encode(enc, pf, "robot", clips, 2, cfg, None, "frozen robot", Shard(0, 2))
    assert len(one) == len(two) == len(clips) and all(np.array_equal(a, b) for a, b in zip(one, two))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # part files removed


@needs_torchrun
def test_analyze_two_processes_give_the_one_process_latents(tiny_pairs, tiny_lam, tmp_path):
    """``hralign analyze --encoder lam:DIR`` under torchrun (2 CPU processes) vs one process: the same
    latents and codes bit for bit, the same clusters and metrics; only the main process reports."""
    import json

    import h5py

    common = ["--pairs", str(tiny_pairs), "--encoder", f"lam:{tiny_lam[0]}", "--batch-size", "7", "--device", "cpu",
              "--no-umap", "--k", "4"]
    out = _run([TORCHRUN, "--nproc_per_node", "2", "--master_port", "29543", "-m", "hralign.cli.main", "analyze",
                *common, "--out", str(tmp_path / "two")])
    assert out.count("report:") == 1 and "sharded over 2 processes" in out, out
    _run([sys.executable, "-m", "hralign.cli.main", "analyze", *common, "--out", str(tmp_path / "one")])
    with h5py.File(tmp_path / "one" / "latents.h5", "r") as a, h5py.File(tmp_path / "two" / "latents.h5", "r") as b:
        assert a["views/frozen/latents"].shape[0] > 7  # several batches: the shards really split the work
        for k in ("latents", "codes", "clusters"):
            assert np.array_equal(a[f"views/frozen/{k}"][()], b[f"views/frozen/{k}"][()]), k
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text())["views"] for r in ("one", "two"))
    assert ma == mb
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no part files left
