"""`hralign lam transfer` / `lam imagine` end to end on tiny data: outputs, scores, baselines, bad input."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import run_cli

from hralign.lam.io import load_lam
from hralign.lam.transfer import evaluate_transfer, transfer
from hralign.pairs import PairsFile

@pytest.fixture(scope="session")
def lam_dir(tiny_lam):
    return tiny_lam[0]


def test_transfer_writes_video_and_figure_and_scores_against_baselines(tiny_pairs, lam_dir, tmp_path):
    gif = tmp_path / "t.gif"
    code, out, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir),
                             "--source", "human:1", "--target", "robot:1", "--out", str(gif), "--json")
    assert code == 0, err
    res = json.loads(out)["transfer"]
    assert res["paired"] and res["steps"] == 3 and res["gap"] == 2  # 8 frames, gap 2: frames 0, 2, 4, 6
    video = iio.imread(gif, index=None)
    assert video.shape[0] == 4  # start + 3 steps
    assert (tmp_path / "t.png").is_file()
    # the copy baseline is computable from the file alone: it must match what the command reports
    real = PairsFile(tiny_pairs).read_clip("robot", 1, [0, 2, 4, 6]).astype(np.float64) / 255
    copy = np.mean([((real[s] - real[0]) ** 2).mean() for s in (1, 2, 3)])
    assert res["mse"]["copy"] == pytest.approx(copy, rel=1e-5)
    assert set(res["mse"]) == {"transfer", "copy", "random", "oracle"}
    assert res["psnr"]["copy"] == pytest.approx(10 * np.log10(1 / copy), rel=1e-5)
    assert len(res["codes"]) == 3 and len(res["mse_per_step"]["transfer"]) == 3


def test_transfer_of_a_clip_onto_itself_is_the_oracle(tiny_pairs, lam_dir):
    model, pairs = load_lam(lam_dir), PairsFile(tiny_pairs)
    res = transfer(model, pairs, ("robot", 2), ("robot", 2))
    assert res.paired
    assert res.mse["transfer"] == pytest.approx(res.mse["oracle"])
    other = transfer(model, pairs, ("human", 2), ("robot", 2))  # same target, other source: same baselines
    assert other.mse["copy"] == res.mse["copy"] and other.mse["random"] == res.mse["random"]
    assert transfer(model, pairs, ("human", 2), ("robot", 2)).mse == other.mse  # seeded: repeatable


def test_unpaired_clips_are_rendered_but_not_scored(tiny_pairs, lam_dir, tmp_path):
    code, out, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir),
                             "--source", "human:0", "--target", "robot:5", "--out", str(tmp_path / "u.mp4"), "--steps", "2")
    assert code == 0, err
    assert "not a pair" in out and "MSE" not in out
    assert iio.imread(tmp_path / "u.mp4", index=None).shape[0] == 3


def test_all_val_table_covers_every_validation_pair(tiny_pairs, lam_dir):
    pairs = PairsFile(tiny_pairs)
    val = np.flatnonzero(pairs.pair_split() == 1)
    code, out, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--all-val")
    assert code == 0, err
    assert "copy-first" in out and "random-latent" in out and f"/{len(val)} pairs" in out
    report = evaluate_transfer(load_lam(lam_dir), pairs)
    assert [r["pair"] for r in report["rows"]] == val.tolist()
    for m in ("transfer", "copy", "random"):
        assert report["mean_mse"][m] == pytest.approx(np.mean([r["mse"][m] for r in report["rows"]]))
    assert report["wins"]["copy"] == sum(r["mse"]["transfer"] < r["mse"]["copy"] for r in report["rows"])


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """Human frames at 32 px (the LAM's size), robot frames at 48 px."""
    from hralign.pairs.synth import SynthConfig, synthesize

    path = tmp_path_factory.mktemp("mixed") / "mixed.h5"
    synthesize(path, SynthConfig(num_tasks=2, pairs_per_task=2, frames=8, image_size=32, robot_image_size=48, seed=3))
    return path


@pytest.mark.parametrize("args, message", [
    (["--source", "human:0", "--target", "robot:99"], "--target robot:99: clip index out of range"),
    (["--source", "human:-1", "--target", "robot:0"], "--source human:-1: clip index out of range"),
    (["--source", "human:0", "--target", "robot:0", "--steps", "4"], "at most 3 LAM steps"),
    (["--source", "human:0", "--target", "robot:0", "--steps", "0"], "--steps should be a positive integer"),
    (["--source", "hand:0", "--target", "robot:0"], "expected DOMAIN:CLIP"),
    (["--source", "human:0"], "--source and --target go together"),
    (["--source", "human:0", "--target", "robot:0", "--out", "x.avi"], "expected a .gif or .mp4"),
])
def test_bad_transfer_input_exits_2_with_one_line(tiny_pairs, lam_dir, tmp_path, args, message):
    argv = ["lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "x.gif")]
    code, out, err = run_cli(*argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.gif").exists()


def test_frames_of_another_size_than_the_lam_exit_2(mixed_sizes, small_pairs, lam_dir, tmp_path):
    code, _, err = run_cli("lam", "transfer", "--pairs", str(mixed_sizes), "--lam", str(lam_dir), "--source", "human:0",
                           "--target", "robot:0", "--out", str(tmp_path / "m.gif"))
    assert code == 2 and "--target robot:0: frames are 48x48 but the LAM was trained on 32x32" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("lam", "transfer", "--pairs", str(small_pairs), "--lam", str(lam_dir), "--source", "human:0",
                           "--target", "robot:0", "--out", str(tmp_path / "m.gif"))
    assert code == 2 and "--source human:0: frames are 48x48" in err


@pytest.fixture(scope="module")
def latent_policy(tiny_pairs, lam_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pol") / "latent"
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
                           "--lam", str(lam_dir), "--head", "continuous", "--steps", "10", "--latent-steps", "30",
                           "--batch-size", "32", "--no-progress", "--out", str(out))
    assert code == 0, err
    return out


def test_imagine_rolls_out_each_instruction_with_the_policy_codes(tiny_pairs, lam_dir, latent_policy, tmp_path):
    import torch

    from hralign.lam.rollout import rollout
    from hralign.policy.imagine import imagine_clip

    gif = tmp_path / "im.gif"
    code, out, err = run_cli("lam", "imagine", "--pairs", str(tiny_pairs), "--clip", "robot:4", "--policy",
                             str(latent_policy), "--steps", "3", "--tasks", "1,0,3", "--out", str(gif), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["tasks"] == [1, 0, 3] and len(res["codes"]) == 3 and len(res["codes"][0]) == 3
    assert iio.imread(gif, index=None).shape[0] == 4 and (tmp_path / "im.png").is_file()
    im = imagine_clip(latent_policy, tiny_pairs, ("robot", 4), 3, [1, 0, 3])  # LAM found via the policy's labels
    assert im.codes.tolist() == res["codes"]
    # the rendered frames are the world model's rollout of exactly the proposed codes
    model = load_lam(lam_dir)
    start = PairsFile(tiny_pairs).read_clip("robot", 4, [0])
    again = rollout(model, np.repeat(start, 3, 0), torch.as_tensor(im.codes)).uint8()
    assert np.abs(again.astype(int) - im.frames.astype(int)).max() <= 1
    # robot:4 is task 1: its own instruction (first row) is scored against the real clip
    assert im.clip_task == 1 and im.errors["compared_steps"] == 3


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps should be an integer in 1..64"),
    (["--steps", "65"], "--steps should be an integer in 1..64"),
    (["--steps", "2", "--clip", "robot:50"], "--clip robot:50: clip index out of range"),
    (["--steps", "2", "--tasks", "0,9"], "task indices should lie in 0..3"),
])
def test_bad_imagine_input_exits_2_with_one_line(tiny_pairs, latent_policy, tmp_path, args, message):
    argv = ["lam", "imagine", "--pairs", str(tiny_pairs), "--policy", str(latent_policy), "--out", str(tmp_path / "i.gif")]
    if "--clip" not in args:
        argv += ["--clip", "robot:0"]
    code, _, err = run_cli(*argv, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_imagine_refuses_a_bc_policy(tiny_pairs, lam_dir, tmp_path):
    out = tmp_path / "bc"
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--image-size", "32",
                           "--head", "bc", "--steps", "2", "--no-progress", "--out", str(out))
    assert code == 0, err
    code, _, err = run_cli("lam", "imagine", "--pairs", str(tiny_pairs), "--clip", "robot:0", "--policy", str(out),
                           "--steps", "2", "--lam", str(lam_dir), "--out", str(tmp_path / "i.gif"))
    assert code == 2 and "proposes no latent actions" in err


def test_moving_region_score_is_computed_from_the_real_frames(tiny_pairs, lam_dir):
    """mse_moving: the copy baseline recomputed by hand over the pixels that change in the real clip."""
    from hralign.lam.transfer import moving_mask

    res = transfer(load_lam(lam_dir), PairsFile(tiny_pairs), ("human", 1), ("robot", 1))
    real = PairsFile(tiny_pairs).read_clip("robot", 1, [0, 2, 4, 6]).astype(np.float64) / 255
    mask = (np.abs(real[1:] - real[:1]).max(-1) > 0.2).any(0)  # (H, W), the default threshold
    assert 0 < mask.mean() < 0.5 and res.moving_fraction == pytest.approx(mask.mean())
    copy_moving = np.mean([((real[s] - real[0]) ** 2).mean(-1)[mask].mean() for s in (1, 2, 3)])
    assert res.mse_moving["copy"] == pytest.approx(copy_moving, rel=1e-5)
    # the static background dilutes whole-frame MSE: restricted to where things move, every error is larger
    for m in ("transfer", "copy", "random", "oracle"):
        assert res.mse_moving[m] > res.mse[m]
    import torch

    assert torch.equal(moving_mask(torch.from_numpy(real).permute(0, 3, 1, 2)), torch.from_numpy(mask))
    # a threshold above every change leaves nothing moving: no moving score, whole-frame scores unchanged
    still = transfer(load_lam(lam_dir), PairsFile(tiny_pairs), ("human", 1), ("robot", 1), motion_threshold=0.999)
    assert still.mse_moving == {} and still.moving_fraction == 0.0 and still.mse == res.mse
    from hralign.errors import HRAlignError

    with pytest.raises(HRAlignError, match="motion_threshold"):
        transfer(load_lam(lam_dir), PairsFile(tiny_pairs), ("human", 1), ("robot", 1), motion_threshold=1.5)


def test_all_val_reports_the_moving_region_beside_whole_frame(tiny_pairs, lam_dir):
    report = evaluate_transfer(load_lam(lam_dir), PairsFile(tiny_pairs))
    rows = [r for r in report["rows"] if r["mse_moving"]]
    assert report["pairs_moving"] == len(rows) > 0
    for m in ("transfer", "copy", "random", "oracle"):
        assert report["mean_mse_moving"][m] == pytest.approx(np.mean([r["mse_moving"][m] for r in rows]))
    assert report["wins_moving"]["random"] == sum(r["mse_moving"]["transfer"] < r["mse_moving"]["random"] for r in rows)
    code, out, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--all-val")
    assert code == 0, err
    assert "moving region" in out and f"{report['mean_mse_moving']['copy']:.5f}" in out


def test_cli_motion_threshold_option(tiny_pairs, lam_dir, tmp_path):
    code, out, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--source", "human:1",
                             "--target", "robot:1", "--out", str(tmp_path / "m.gif"), "--motion-threshold", "0.05",
                             "--json")
    assert code == 0, err
    loose = json.loads(out)["transfer"]
    strict = transfer(load_lam(lam_dir), PairsFile(tiny_pairs), ("human", 1), ("robot", 1))  # default 0.2
    assert loose["moving_fraction"] > strict.moving_fraction
    code, _, err = run_cli("lam", "transfer", "--pairs", str(tiny_pairs), "--lam", str(lam_dir), "--all-val",
                           "--motion-threshold", "2")
    assert code == 2 and "motion_threshold" in err and len(err.strip().splitlines()) == 1
