"""`--log-with`: metrics.jsonl's figures reach Accelerate's trackers, read back by TensorBoard's own reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import accelerate.tracking
import pytest
import torch
from conftest import TINY_LAM_ARGS, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt
from hralign.errors import HRAlignError
from hralign.train import Phase, TrainConfig, open_session
from hralign.train.config import RESUMABLE_FIELDS, parse_log_with
from hralign.train.trackers import check_trackers, tracker_config, tracker_init_kwargs, tracker_scalars


def _lines(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _expected(lines: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] written from metrics.jsonl by hand: nested keys joined with '/'."""
    out: dict[str, list[tuple[int, float]]] = {}

    def walk(v, tag, step):
        if isinstance(v, dict):
            for k, vv in v.items():
                walk(vv, f"{tag}/{k}", step)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.setdefault(tag, []).append((step, float(v)))

    for line in lines:
        for k, v in line.items():
            if k != "step":
                walk(v, k, line["step"])
    return out


def _tensorboard(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_same(board: dict, expected: dict) -> None:
    assert sorted(board) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in board[tag]] == [s for s, _ in points], tag
        # event files store float32
        assert [v for _, v in board[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-12), tag


def test_log_with_names_are_checked_by_the_config():
    assert parse_log_with("none") == () and parse_log_with("tensorboard") == ("tensorboard",)
    assert parse_log_with("wandb, tensorboard,wandb") == ("wandb", "tensorboard")
    assert TrainConfig().log_with == "none" and "log_with" in RESUMABLE_FIELDS
    for bad in ("tensorbord", "none,wandb", "", "all"):
        with pytest.raises(HRAlignError, match=r"`--log-with` should be none or one or more of tensorboard, wandb"):
            TrainConfig(log_with=bad)


def test_missing_tracker_package_is_one_line_naming_what_is_installed(monkeypatch):
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: ["tensorboard"])
    assert check_trackers("tensorboard") == ("tensorboard",)
    with pytest.raises(HRAlignError, match=r"`--log-with` tensorboard,wandb: the wandb package is not installed "
                                           r"\(installed trackers: tensorboard\); pip install wandb"):
        check_trackers("tensorboard,wandb")
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    with pytest.raises(HRAlignError, match=r"installed trackers: none"):
        check_trackers("tensorboard")


def test_init_kwargs_keep_trackers_offline_under_the_run(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    kw = tracker_init_kwargs(("tensorboard", "wandb"), tmp_path, None)
    assert kw == {"tensorboard": {}, "wandb": {"dir": str(tmp_path / "trackers"), "mode": "offline"}}
    monkeypatch.setenv("WANDB_MODE", "online")  # the user's choice is left alone
    assert tracker_init_kwargs(("wandb",), tmp_path, 40)["wandb"] == {"dir": str(tmp_path / "trackers")}
    # resumed after update 40: TensorBoard hides what the interrupted run wrote after it
    assert tracker_init_kwargs(("tensorboard",), tmp_path, 40) == {"tensorboard": {"purge_step": 41}}


def test_scalars_and_config_given_to_trackers():
    line = {"step": 5, "stage": "action", "loss": 0.5, "lr": 1e-3, "eval": {"mse": 2, "per_dim": [1, 2],
            "knn": {"top1": 0.25}}, "stopped": "early", "flag": True}
    assert tracker_scalars(line) == {"action/loss": 0.5, "action/lr": 1e-3, "action/eval/mse": 2.0,
                                     "action/eval/knn/top1": 0.25}
    assert tracker_scalars({"step": 1, "eval": {}}) == {}
    assert tracker_config({"lr": 0.1, "out": "x", "resume": False, "tuple": (1, 2), "model": {"dim": 8, "x": None}}) == \
        {"lr": 0.1, "out": "x", "resume": False, "model.dim": 8}


def test_adapt_run_logged_with_tensorboard_matches_metrics_jsonl(tiny_pairs, tmp_path):
    cfg = AdaptConfig(pairs=str(tiny_pairs), out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                      encoder="r3m-resnet18", image_size=32, frames=3, batch_size=2, steps=4, eval_every=2,
                      checkpoint_every=0, log_every=1, device="cpu", log_with="tensorboard")
    run_adapt(cfg, progress=False, echo=lambda *_: None)
    lines = _lines(tmp_path / "run")
    assert [ln["step"] for ln in lines if "loss" in ln] == [1, 2, 3, 4]
    assert any("eval" in ln for ln in lines)
    board = _tensorboard(tmp_path / "run" / "trackers" / "hralign-adapt")
    assert {"loss", "lr"} <= set(board) and any(t.startswith("eval/") for t in board)
    _assert_same(board, _expected(lines))


def test_two_stages_log_under_their_names_at_growing_steps(tmp_path):
    model = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)

    def forward(m, step):
        return m(x).pow(2).mean(), {"norm": float(m.weight.detach().norm())}

    cfg = TrainConfig(steps=3, batch_size=8, log_every=1, checkpoint_every=0, eval_every=0, device="cpu",
                      log_with="tensorboard")
    session = open_session(cfg, tmp_path / "run", "two", {})
    session.begin()
    for i, (stage, steps) in enumerate((("latent", 3), ("action", 2))):
        session.run_phase(Phase(stage, steps, model, forward, record={"stage": stage}), i, progress=False)
    session.finish()
    lines = _lines(tmp_path / "run")
    assert [(ln["stage"], ln["step"]) for ln in lines] == [("latent", 1), ("latent", 2), ("latent", 3),
                                                             ("action", 1), ("action", 2)]
    board = _tensorboard(tmp_path / "run" / "trackers" / "hralign-two")
    assert sorted(board) == ["action/loss", "action/lr", "action/norm", "latent/loss", "latent/lr", "latent/norm"]
    assert [s for s, _ in board["latent/loss"]] == [1, 2, 3] and [s for s, _ in board["action/loss"]] == [4, 5]
    assert [v for _, v in board["action/norm"]] == pytest.approx([ln["norm"] for ln in lines[3:]], rel=1e-6)


def test_resumed_run_logs_each_step_once(tiny_pairs, tmp_path):
    args = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "12", *TINY_LAM_ARGS,
            "--checkpoint-every", "4", "--keep-checkpoints", "3", "--device", "cpu", "--log-every", "2",
            "--log-with", "tensorboard", "--out", str(tmp_path / "run")]
    code, _, err = run_cli(*args)
    assert code == 0, err
    straight = _lines(tmp_path / "run")
    # as if killed after the lines of steps 6-12 but before their checkpoints: resume from step 4
    for step in (8, 12):
        shutil.rmtree(tmp_path / "run" / "checkpoints" / f"step_{step:08d}")
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    lines = _lines(tmp_path / "run")
    assert [ln["step"] for ln in lines] == [ln["step"] for ln in straight] and \
        [ln["step"] for ln in lines if "loss" in ln] == [2, 4, 6, 8, 10, 12]
    # the interrupted run's events past step 4 are hidden (purge_step): each step once, as in metrics.jsonl
    _assert_same(_tensorboard(tmp_path / "run" / "trackers" / "hralign-lam"), _expected(lines))


def test_bad_log_with_on_a_training_cli_is_one_line_and_writes_nothing(tiny_pairs, tmp_path, monkeypatch):
    base = ["lam", "train", "--pairs", str(tiny_pairs), "--gap", "2", "--steps", "2", *TINY_LAM_ARGS]
    code, _, err = run_cli(*base, "--out", str(tmp_path / "a"), "--log-with", "tensorbord")
    assert code == 2 and "`--log-with` should be none or one or more of" in err and "'tensorbord'" in err, err
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    code, _, err = run_cli(*base, "--out", str(tmp_path / "b"), "--log-with", "tensorboard")
    assert code == 2 and "the tensorboard package is not installed" in err, err
    assert len([ln for ln in err.strip().splitlines() if ln.strip()]) == 1, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
