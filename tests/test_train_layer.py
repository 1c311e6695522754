"""The training layer (hralign.train): its parts, and bad input to every training CLI (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_LAM_ARGS, run_cli

from hralign.errors import HRAlignError
from hralign.train import TrainConfig
from hralign.train.checkpoint import CheckpointSaver
from hralign.train.distributed import gather_with_grad, global_batchnorm, global_mean
from hralign.train.metrics import MetricsLog
from hralign.train.optim import make_optimizer_and_scheduler, set_lr_for_step
from hralign.train.rundir import RunDir, config_differences


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


def _snapshot(path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_config_checks_name_the_option():
    for kw, flag in ((dict(lr=0), "--lr"), (dict(lr_schedule="step"), "--lr-schedule"), (dict(device="tpu"), "--device"),
                     (dict(precision="fp16"), "--precision"), (dict(val_fraction=1.0), "--val-fraction"),
                     (dict(keep_checkpoints=0), "--keep-checkpoints"), (dict(resume=True, overwrite=True), "--resume")):
        with pytest.raises(HRAlignError, match=flag):
            TrainConfig(**kw)


def test_config_differences_skip_resumable_fields_and_recurse():
    saved = {"lr": 1e-3, "steps": 10, "model": {"tokens": 4, "dim": 8}}
    now = {"lr": 2e-3, "steps": 20, "model": {"tokens": 2, "dim": 8}}
    assert config_differences(saved, now, ("steps",)) == [("lr", 1e-3, 2e-3), ("model.tokens", 4, 2)]


def test_schedules_come_from_timm_and_are_functions_of_the_step():
    p = [torch.nn.Parameter(torch.zeros(1))]
    _, sched = make_optimizer_and_scheduler(p, TrainConfig(lr=1.0, lr_schedule="cosine", warmup=2, steps=6), 6)
    lrs = [set_lr_for_step(sched, s) for s in range(7)]
    assert lrs[:3] == [0.0, 0.5, 1.0] and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert set_lr_for_step(sched, 1) == 0.5  # stateless: going back gives the same value
    _, lin = make_optimizer_and_scheduler(p, TrainConfig(lr=1.0, lr_schedule="linear", steps=4), 4)
    assert [set_lr_for_step(lin, s) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_checkpoints_are_atomic_keep_the_newest_and_load(tmp_path):
    saver = CheckpointSaver(tmp_path, keep=2)
    for step in (3, 6, 9):
        saver.save(step, {"w": torch.full((2,), float(step))}, {"step": step, "optimizer": {}})
    assert [p.name for p in saver.all()] == ["step_00000006", "step_00000009"]
    (tmp_path / "checkpoints" / ".step_00000012.tmp").mkdir()  # a save killed midway is not a checkpoint
    latest = saver.latest()
    assert latest.state["updates"] == 9 and torch.equal(latest.model["w"], torch.full((2,), 9.0))
    (latest.path / "state.pt").write_bytes(b"garbage")
    with pytest.raises(HRAlignError, match="unreadable checkpoint"):
        saver.latest()


def test_metrics_log_trims_to_the_checkpoints_line_count(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start()
    for step in range(1, 5):
        log.write({"step": step})
    assert log.lines == 4
    again = MetricsLog(tmp_path / "metrics.jsonl")
    again.trim(2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert again.lines == 2
    quiet = MetricsLog(tmp_path / "other.jsonl", enabled=False)  # another process: counts, writes nothing
    quiet.start()
    quiet.write({"step": 1})
    assert quiet.lines == 1 and not (tmp_path / "other.jsonl").exists()


def test_run_dir_rule(tmp_path):
    out = tmp_path / "run"
    run = RunDir(out, "lam", {"lr": 1.0}, ("steps",), resume=False, overwrite=False, world_size=1, is_main=True)
    assert not out.exists()  # checks write nothing
    run.begin({"extra": 1})
    saved = json.loads((out / "run.json").read_text())
    assert saved["kind"] == "lam" and saved["config"] == {"lr": 1.0} and saved["world_size"] == 1
    with pytest.raises(HRAlignError, match="--resume to continue it or --overwrite"):
        RunDir(out, "lam", {"lr": 1.0}, (), resume=False, overwrite=False, world_size=1, is_main=True)
    with pytest.raises(HRAlignError, match="`hralign lam` run, not `adapt`"):
        RunDir(out, "adapt", {"lr": 1.0}, (), resume=True, overwrite=False, world_size=1, is_main=True)
    with pytest.raises(HRAlignError, match="1 process\(es\), this run has 2"):
        RunDir(out, "lam", {"lr": 1.0}, (), resume=True, overwrite=False, world_size=2, is_main=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(HRAlignError, match="holds no hralign run"):
        RunDir(tmp_path / "mine", "lam", {}, (), resume=False, overwrite=True, world_size=1, is_main=True)


def test_a_run_from_before_a_field_rename_resumes(tmp_path):
    """`hralign adapt`'s `adapter` (the method) is now `method`: an older run.json still resumes, and
    `--resume` fills `--method` from it."""
    from hralign.cli.options import saved_options
    from hralign.train.rundir import read_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"kind": "adapt", "config": {"adapter": "lora", "lr": 1.0}, "world_size": 1}))
    assert read_run(out)["config"] == {"method": "lora", "lr": 1.0}
    RunDir(out, "adapt", {"method": "lora", "lr": 1.0}, (), resume=True, overwrite=False, world_size=1, is_main=True)
    with pytest.raises(HRAlignError, match="was run with --method 'lora', this call passes 'ia3'"):
        RunDir(out, "adapt", {"method": "ia3", "lr": 1.0}, (), resume=True, overwrite=False, world_size=1, is_main=True)
    assert saved_options({"resume": True, "out": str(out)})["method"] == "lora"
    (out / "run.json").write_text(json.dumps({"kind": "policy", "config": {"adapter": "dir"}, "world_size": 1}))
    assert read_run(out)["config"] == {"adapter": "dir"}  # renames are per trainer: a policy's --adapter DIR stays


def test_alone_gathering_and_batchnorm_change_nothing():
    x = torch.randn(4, 3)
    assert gather_with_grad(x)[0] is x and gather_with_grad(x)[1] == 0
    assert global_batchnorm(torch.nn.BatchNorm1d(3), None) == []
    # alone, a masked mean is this batch's: sum / count (a count of 0 counts as 1)
    total = torch.tensor(6.0, requires_grad=True)
    assert global_mean(total, torch.tensor(4.0)).item() == 1.5
    assert global_mean(total, torch.tensor(0.0)).item() == 6.0


_GATHER_WORKER = """
import torch, torch.distributed as dist
from hralign.train.distributed import gather_with_grad, global_mean
dist.init_process_group("gloo")
r = dist.get_rank()
g = torch.Generator().manual_seed(0)
x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
valid = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)  # 2 counted rows on rank 0, 1 on rank 1
local = x[2 * r:2 * r + 2].detach().requires_grad_()
full, offset = gather_with_grad(local)
bn = torch.nn.BatchNorm2d(3).double()
(bn(full) * w).sum().backward()  # every process computes the loss of the whole batch
share = local.detach().clone().requires_grad_()
term = global_mean(((share * w[2 * r:2 * r + 2]).sum((1, 2, 3)) * valid[2 * r:2 * r + 2]).sum(), valid[2 * r:2 * r + 2].sum())
term.backward()
torch.save({"channels_last": full.is_contiguous(memory_format=torch.channels_last), "offset": offset,
            "grad": local.grad, "term": term.detach(), "mean_grad": share.grad}, f"{OUT}/rank{r}.pt")
dist.destroy_process_group()
"""


def test_two_processes_gather_in_one_process_layout_and_global_mean(tmp_path):
    """gather_with_grad keeps channels-last (the layout decides CPU BatchNorm's rounding) and its gradients
    are each process's rows of the one-process gradient (times the W processes that each compute the
    loss); global_mean's terms average to the mean over the counted rows of the whole batch."""
    script = tmp_path / "worker.py"
    script.write_text(f"OUT = {str(tmp_path)!r}\n" + _GATHER_WORKER)
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", port, str(script)],
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(p["channels_last"] for p in parts) and [p["offset"] for p in parts] == [0, 2]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    x.requires_grad_()
    (torch.nn.BatchNorm2d(3).double()(x) * w).sum().backward()
    assert torch.allclose(torch.cat([p["grad"] for p in parts]), 2 * x.grad, atol=1e-12)
    # the mean over the 3 counted rows (not the mean of the 2 shares' means), and DDP's average of the
    # 2 gradients is the one-process gradient of that mean
    rows = (x.detach() * w).sum((1, 2, 3))
    assert torch.isclose((parts[0]["term"] + parts[1]["term"]) / 2, rows[:3].mean())
    mean_grad = torch.cat([p["mean_grad"] for p in parts]) / 2
    expected = w * torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)[:, None, None, None] / 3
    assert torch.allclose(mean_grad, expected, atol=1e-12)


# ---- bad input to the training CLIs --------------------------------------------------------------
def _cli(trainer: str, pairs, out) -> list[str]:
    return {"adapt": ["adapt", "--pairs", str(pairs), "--out", str(out), "--image-size", "32", "--steps", "2"],
            "lam": ["lam", "train", "--pairs", str(pairs), "--out", str(out), "--steps", "2", *TINY_LAM_ARGS],
            "pretrain": ["pretrain", "--pairs", str(pairs), "--out", str(out), "--steps", "2", "--quiet"],
            "policy": ["policy", "train", "--pairs", str(pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
                       "--out", str(out), "--steps", "2"],
            "gr1": ["policy", "train", "--kind", "gr1", "--pairs", str(pairs), "--encoder", "r3m-resnet18",
                    "--image-size", "32", "--out", str(out), "--steps", "2"]}[trainer]


@pytest.mark.parametrize("trainer", ["adapt", "lam", "pretrain", "policy", "gr1"])
def test_unavailable_device_or_precision_is_one_line_and_writes_nothing(trainer, tiny_pairs, tmp_path):
    out = tmp_path / "run"
    if not torch.cuda.is_available():
        code, _, err = run_cli(*_cli(trainer, tiny_pairs, out), "--device", "cuda")
        _one_line(code, err, "--device cuda", "CUDA is not available")
        assert not out.exists()
    code, _, err = run_cli(*_cli(trainer, tiny_pairs, out), "--device", "cpu", "--precision", "bf16")
    _one_line(code, err, "--precision bf16")
    assert not out.exists()


@pytest.fixture(scope="module")
def finished_run(tiny_pairs, tmp_path_factory):
    """``finished_run(trainer) -> (its command line without --out, run dir)``: one tiny CPU run per trainer."""
    root, made = tmp_path_factory.mktemp("layer"), {}
    extra = {"adapt": ["--frames", "3", "--batch-size", "4", "--eval-every", "0", "--cache-dir", str(root / "cache")],
             "lam": ["--gap", "2"],
             "pretrain": ["--encoder", "timm:resnet10t", "--image-size", "32", "--batch-size", "2", "--eval-every", "0",
                          "--eval-frames", "2", "--text-encoder", "none"],
             "policy": ["--batch-size", "16", "--no-progress"],
             "gr1": ["--history", "3", "--dim", "16", "--heads", "2", "--no-instruction", "--batch-size", "8",
                     "--no-progress"]}

    def get(trainer: str):
        if trainer not in made:
            out = root / trainer
            args = [a for a in _cli(trainer, tiny_pairs, out) if a != str(out)]
            args = [*args[:args.index("--out")], *args[args.index("--out") + 1:], *extra[trainer], "--device", "cpu"]
            code, _, err = run_cli(*args, "--out", str(out))
            assert code == 0, err
            made[trainer] = (args, out)
        return made[trainer]
    return get


@pytest.mark.parametrize("trainer", ["adapt", "lam", "pretrain", "policy", "gr1"])
@pytest.mark.parametrize("option, value", [("--lr", "0.5"), ("--lr-schedule", "linear"), ("--image-size", "64")])
def test_resume_with_a_changed_option_names_it_and_writes_nothing(finished_run, trainer, option, value):
    # only the required options, the changed one and a longer --steps: the rest come from run.json
    args, out = finished_run(trainer)
    required = {"adapt": 1, "lam": 2, "pretrain": 1, "policy": 2, "gr1": 2}[trainer]  # words before --pairs
    base = [*args[:required], "--pairs", args[args.index("--pairs") + 1]]
    if trainer in ("policy", "gr1"):
        base += ["--encoder", "r3m-resnet18"]  # a required option
    before = _snapshot(out)
    code, _, err = run_cli(*base, "--out", str(out), "--steps", "4", "--resume", option, value)
    _one_line(code, err, f"was run with {option} ", "may change")
    assert _snapshot(out) == before
