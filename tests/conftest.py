"""Shared fixtures: small synthetic pairs files made by the project itself (nothing downloaded)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory):
    """A small frame-aligned paired set: 4 tasks, 3 pairs per task, 8 frames of 32x32."""
    from hralign.pairs.synth import SynthConfig, synthesize

    path = tmp_path_factory.mktemp("pairs") / "tiny.h5"
    synthesize(path, SynthConfig(num_tasks=4, pairs_per_task=3, frames=8, image_size=32, seed=0))
    return path


@pytest.fixture(scope="session")
def small_pairs(tmp_path_factory):
    """A slightly larger set for training smoke tests: 8 tasks, 4 pairs per task, 12 frames of 48x48."""
    from hralign.pairs.synth import SynthConfig, synthesize

    path = tmp_path_factory.mktemp("pairs") / "small.h5"
    synthesize(path, SynthConfig(num_tasks=8, pairs_per_task=4, frames=12, image_size=48, seed=1))
    return path


@pytest.fixture(scope="session")
def push_demos(tmp_path_factory):
    """Two MetaWorld push expert episodes at 32x32 (the [sim] extra; a test using it skips without it)."""
    from hralign.sim.collect import CollectConfig, collect

    path = tmp_path_factory.mktemp("mw") / "push.h5"
    collect(path, CollectConfig(tasks=("push",), episodes=2, image_size=32, max_steps=150), progress=False)
    return path


# A latent action model small enough to train in seconds (conv IDM, 8 channels, 32-d tokens).
TINY_LAM_ARGS = ["--idm", "conv", "--conv-channels", "8", "--patch-size", "8", "--dim", "32", "--heads", "2",
                 "--idm-depth", "1", "--fdm-depth", "1", "--code-dim", "8", "--batch-size", "8", "--log-every", "5",
                 "--eval-pairs", "32", "--restart-every", "5"]


@pytest.fixture(scope="session")
def tiny_lam(tiny_pairs, tmp_path_factory):
    """(directory, stdout) of `hralign lam train` on ``tiny_pairs``: gap 2, 20 steps. Read-only for tests."""
    out = tmp_path_factory.mktemp("lam") / "lam"
    code, stdout, stderr = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(out), "--gap", "2",
                                   "--steps", "20", *TINY_LAM_ARGS)
    assert code == 0, stderr
    return out, stdout


def run_cli(*args: str):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    import contextlib
    import io

    from hralign.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()
