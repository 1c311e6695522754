"""`hralign adapt` end to end on tiny data: paths agree, runs repeat, resume is exact, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from hralign.align.config import AdaptConfig
from hralign.align.evaluate import format_table
from hralign.align.trainer import run_adapt
from hralign.errors import HRAlignError

FAST = dict(encoder="r3m-resnet18", image_size=32, frames=3, batch_size=2, steps=6, warmup=2, eval_every=0,
            checkpoint_every=3, log_every=1, device="cpu", lr=1e-3)


def _one_error_line(err: str) -> bool:
    """One `error:` line, last on stderr, no traceback (a progress bar may precede it)."""
    last = err.strip().splitlines()[-1].split("\r")[-1]
    return last.startswith("error:") and err.count("error:") == 1 and "Traceback" not in err


def _cfg(pairs, out, cache_dir, **kw) -> AdaptConfig:
    return AdaptConfig(pairs=str(pairs), out=str(out), cache_dir=str(cache_dir), **{**FAST, **kw})


def _losses(run: Path) -> list[float]:
    return [e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e]


def _adapter(run: Path) -> dict:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def cached_run(tiny_pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    metrics = run_adapt(_cfg(tiny_pairs, root / "cached", root / "cache"), progress=False, echo=lambda *_: None)
    return root, metrics


def test_run_directory_has_everything_and_adapter_loads(cached_run, tiny_pairs):
    import hralign

    root, metrics = cached_run
    run = root / "cached"
    for name in ("adapter/hralign.json", "metrics.jsonl", "run.json", "eval.json"):
        assert (run / name).exists(), name
    cfg = json.loads((run / "run.json").read_text())
    assert cfg["kind"] == "adapt" and cfg["world_size"] == 1 and cfg["global_batch"] == 2
    assert cfg["resolved"]["path"] == "cached" and cfg["resolved"]["stage_cut"]
    assert len(cfg["resolved"]["pairs_sha256"]) == 64 and cfg["versions"]["torch"]
    assert set(metrics) >= {"frozen", "adapted", "val_loss"}
    assert metrics["frozen"]["frame_error"] > 0 and "frame error" in format_table(metrics)
    enc = hralign.load_encoder(str(run / "adapter"))
    images = torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8)
    assert enc(images).shape == (2, enc.feature_dim)
    assert all(not p.requires_grad for p in enc.parameters())


def test_cached_path_gives_the_plain_loss_curve(cached_run, tiny_pairs):
    root, _ = cached_run
    run_adapt(_cfg(tiny_pairs, root / "plain", root / "cache", cache=False), progress=False, echo=lambda *_: None)
    cached, plain = _losses(root / "cached"), _losses(root / "plain")
    assert len(cached) == len(plain) == FAST["steps"]
    assert np.allclose(cached, plain, atol=1e-4), (cached, plain)
    assert json.loads((root / "plain" / "run.json").read_text())["resolved"]["path"] == "plain"


def test_same_seed_same_adapter_weights(cached_run, tiny_pairs):
    root, _ = cached_run
    run_adapt(_cfg(tiny_pairs, root / "again", root / "cache"), progress=False, echo=lambda *_: None)
    a, b = _adapter(root / "cached"), _adapter(root / "again")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and training changed something: the adapter is not its zero-initialised self
    assert any(v.abs().sum() > 0 for k, v in a.items())


def test_kill_after_checkpoint_then_resume_matches_uninterrupted(cached_run, tiny_pairs, tmp_path):
    root, _ = cached_run
    steps = 40
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "hralign.cli.main", "adapt", "--pairs", str(tiny_pairs), "--out", str(out),
            "--cache-dir", str(root / "cache"), "--steps", str(steps), "--checkpoint-every", "3",
            *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in FAST.items() if k not in ("steps", "checkpoint_every")), [])]
    # CPU results are bit-identical only at the same thread count: give the child this process's.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("step_*/state.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = sorted((out / "checkpoints").glob("step_*/state.pt"))
    assert ckpts, "no checkpoint was written before the kill"
    assert not (out / "adapter").exists() or int(ckpts[-1].parent.name.split("_")[1]) < steps
    code, _, err = run_cli(*args[3:], "--resume")
    assert code == 0, err
    ref = _cfg(tiny_pairs, tmp_path / "straight", root / "cache", steps=steps)
    run_adapt(ref, progress=False, echo=lambda *_: None)
    a, b = _adapter(out), _adapter(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["step"] for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in e] == list(range(1, steps + 1))
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()


def test_resume_with_different_config_says_what_differs(cached_run, tiny_pairs):
    root, _ = cached_run
    code, _, err = run_cli("adapt", "--pairs", str(tiny_pairs), "--out", str(root / "cached"), "--resume",
                           "--cache-dir", str(root / "cache"), "--lr", "0.5", "--image-size", "32", "--frames", "3",
                           "--batch-size", "2", "--warmup", "2")
    assert code == 2 and _one_error_line(err) and "lr" in err


def test_disk_full_while_saving_keeps_previous_checkpoint(cached_run, tiny_pairs, tmp_path, monkeypatch):
    root, _ = cached_run
    import hralign.align.trainer as trainer

    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(28, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(trainer.torch, "save", flaky_save)
    out = tmp_path / "full"
    code, _, err = run_cli("adapt", "--pairs", str(tiny_pairs), "--out", str(out), "--cache-dir", str(root / "cache"),
                           *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in FAST.items()), []))
    assert code == 2 and _one_error_line(err) and "No space left" in err
    ckpts = sorted((out / "checkpoints").glob("*"))
    assert [c.name for c in ckpts] == ["step_00000003"]  # the first one, intact, no temp files
    state = torch.load(ckpts[0] / "state.pt", weights_only=True)
    assert state["step"] == 3


@pytest.mark.parametrize("case", ["no_pairs", "few_val", "unknown_encoder", "missing_weights", "exists"])
def test_bad_input_is_one_line_exit_2(case, tiny_pairs, tmp_path):
    pairs = tiny_pairs
    extra: list[str] = []
    if case == "no_pairs":
        pairs = tmp_path / "nopairs.h5"
        with h5py.File(tiny_pairs, "r") as src, h5py.File(pairs, "w") as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in src:
                if name not in ("pairs", "split"):
                    src.copy(name, dst)
            dst.create_dataset("pairs", data=np.zeros((0, 2), np.int64))
    elif case == "few_val":
        extra = ["--batch-size", "5"]  # 8 training pairs suffice, 4 validation pairs do not
    else:
        extra = ["--batch-size", "2"]
    if case == "unknown_encoder":
        extra += ["--encoder", "nonexistent-net"]
    if case == "missing_weights":
        extra += ["--weights", str(tmp_path / "nope.pt")]
    if case == "exists":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "something").write_text("x")
    args = ["adapt", "--pairs", str(pairs), "--out", str(tmp_path / "run"), "--image-size", "32", "--steps", "2",
            "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *extra]
    code, _, err = run_cli(*args)
    assert code == 2, err
    assert _one_error_line(err), err
    if case == "few_val":
        assert "validation pairs" in err
    if case != "exists":
        assert not (tmp_path / "run" / "adapter").exists()


def test_full_finetune_run_changes_the_robot_encoder_only(cached_run, tiny_pairs, tmp_path):
    import hralign

    root, _ = cached_run
    run_adapt(_cfg(tiny_pairs, tmp_path / "full", root / "cache", method="full", steps=3), progress=False,
              echo=lambda *_: None)
    cfg = json.loads((tmp_path / "full" / "run.json").read_text())
    base = hralign.load_encoder("r3m-resnet18", image_size=32)
    assert cfg["resolved"]["trainable_parameters"] == sum(p.numel() for p in base.parameters())
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    tuned = hralign.load_encoder(str(tmp_path / "full" / "adapter"))
    assert not torch.allclose(tuned(x), base(x))


def test_attention_pooling_is_trained_recorded_and_saved(cached_run, tiny_pairs, tmp_path):
    from safetensors.torch import load_file as load_st

    root, _ = cached_run
    run_adapt(_cfg(tiny_pairs, tmp_path / "attn", root / "cache", pooling="attention", steps=3), progress=False,
              echo=lambda *_: None)
    cfg = json.loads((tmp_path / "attn" / "run.json").read_text())
    assert cfg["config"]["pooling"] == "attention" and cfg["resolved"]["pooling"] == "attention"
    weights = load_st(str(tmp_path / "attn" / "pooling.safetensors"))
    assert weights["query.weight"].shape == (512, 384)  # frame feature dim x MiniLM dim
    # the trainable query counts among the run's parameters, beside the adapter
    assert cfg["resolved"]["trainable_parameters"] == cfg["resolved"]["adapter_parameters"] + 512 * 384 + 512


def test_frame_weight_adds_a_logged_per_frame_term_that_training_lowers(cached_run, tiny_pairs, tmp_path):
    root, _ = cached_run
    final = run_adapt(_cfg(tiny_pairs, tmp_path / "fw", root / "cache", frame_weight=5.0, steps=12, checkpoint_every=0),
                      progress=False, echo=lambda *_: None)
    # held out: the adapted robot frames moved towards their human partners (0.30 -> 0.23 here)
    assert final["adapted"]["frame_error"] < 0.9 * final["frozen"]["frame_error"]
    entries = [e for e in map(json.loads, (tmp_path / "fw" / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    frame = [e["frame_loss"] for e in entries]
    assert len(frame) == 12 and frame[-1] < 0.8 * frame[0]
    assert all(e["loss"] >= 5.0 * e["frame_loss"] for e in entries)  # the contrastive part is still there
    plain = [e for e in map(json.loads, (root / "cached" / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    assert all("frame_loss" not in e for e in plain)  # default: HR-Align's loss only
    with pytest.raises(HRAlignError, match="frame-weight"):
        _cfg(tiny_pairs, tmp_path / "bad", root / "cache", frame_weight=-1.0)
