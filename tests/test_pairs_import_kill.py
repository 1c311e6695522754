"""SIGKILL at random points of `hralign pairs import --workers 2`, many times, then --resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from import_fixtures import frame_img, write_mp4

from hralign.pairs import PairsFile
from hralign.pairs.importers import pipeline as P
from hralign.pairs.validate import validate

REPO = Path(__file__).resolve().parents[1]


def _kill_loop(tmp_path: Path, kills: int, seed: int) -> None:
    d = tmp_path / "vids"
    rows = ["path,instruction,embodiment,pair"]
    for i in range(48):
        write_mp4(d / f"{i}.mp4", [frame_img(i + t) for t in range(60)], gop=30)
        rows.append(f"{i}.mp4,task {i // 2 % 3},{'human' if i % 2 else 'robot'},p{i // 2}")
    (d / "c.csv").write_text("\n".join(rows) + "\n")
    args = ["import", "folder", str(d), "--csv", str(d / "c.csv"), "--image-size", "32", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", "from hralign.cli.main import main; main()", "pairs"] + args
    subprocess.run(cmd + ["--out", str(tmp_path / "full.h5"), "--workers", "1"], env=env, check=True, capture_output=True)
    out, rng, sessions, killed = tmp_path / "o.h5", random.Random(seed), [], 0
    part = P.partial_dir(out)
    try:
        while killed < kills:
            # --resume on every run: the first one starts the partial import, the others continue it
            proc = subprocess.Popen(cmd + ["--out", str(out), "--resume"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            sessions.append(proc.pid)
            # a random point: after 0-2 more finished clips (so 20 kills never reach the end), then 0-50 ms more
            target = len(list(part.glob("clip_*.h5"))) + rng.randint(0, 2)
            deadline = time.time() + 30
            while len(list(part.glob("clip_*.h5"))) < target and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            assert proc.poll() is None, "the import ended before it was killed"
            os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers are orphaned mid-clip
            proc.wait()
            killed += 1
            assert not out.exists()
        done = subprocess.run(cmd + ["--out", str(out), "--resume"], env=env, capture_output=True, text=True)
    finally:
        for pid in sessions:  # orphaned workers of the killed runs (each run got its own session)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert done.returncode == 0, done.stderr
    assert P.content_hash(out) == P.content_hash(tmp_path / "full.h5")
    assert validate(out) == [] and PairsFile(out).num_pairs == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5", "o.h5", "vids"]  # no partial, no temporaries


@pytest.mark.slow
def test_twenty_random_sigkills_then_resume_equal_uninterrupted(tmp_path):
    _kill_loop(tmp_path, kills=20, seed=0)
