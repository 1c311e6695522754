"""SIGKILL at random points of `hralign pairs import --workers 2`, each kill followed by `--resume`.

Kills come in chains: an import is killed after a delay drawn from a seeded RNG, its `--resume` is
killed again, ..., and a last `--resume` runs to the end. The finished file must have the content
(``content_hash``) of an uninterrupted import, and nothing may remain beside it: no partial folder,
no writer temporary file. The whole process group is killed (the workers too), as the OOM killer
or a job scheduler would. Where each kill landed is printed (``pytest -s``) and kept in the result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from import_fixtures import frame_img, write_mp4

from hralign.pairs.importers import pipeline as P
from hralign.pairs.validate import validate

REPO = Path(__file__).resolve().parents[1]
ITEM9 = ("item 9: the writer's temporary file of a killed import stays beside the output after a successful --resume "
         "(and a kill between the rename and the partial folder's removal leaves .OUT.partial/)")


def _videos(d: Path, clips: int, frames: int) -> Path:
    """``clips`` videos of ``frames`` frames, paired two by two (human, robot)."""
    rows = ["path,instruction,embodiment,pair"]
    for i in range(clips):
        write_mp4(d / f"{i}.mp4", [frame_img(i + t) for t in range(frames)], gop=30)
        rows.append(f"{i}.mp4,task {i // 2 % 3},{'human' if i % 2 else 'robot'},p{i // 2}")
    (d / "c.csv").write_text("\n".join(rows) + "\n")
    return d


def _cmd(d: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hralign.cli.main", "pairs", "import", "folder", str(d), "--csv", str(d / "c.csv"),
            "--out", str(out), "--image-size", "32", "--workers", "2", "--compression", "gzip", *extra]


def _where(out: Path, clips: int) -> str:
    """Where a kill landed, read from what it left."""
    part = P.partial_dir(out)
    if out.exists():
        return "after the file was renamed into place" + (", before the partial folder was removed" if part.exists() else "")
    temps = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.name.endswith(".tmp")]
    if not part.exists():
        return "before the partial folder (start-up, planning)"
    shards = len(list(part.glob("clip_*.h5")))
    if shards < clips:
        return f"while decoding ({shards}/{clips} shards)"
    return "during assembly (writer temp file present)" if temps else "after the last shard, before assembly"


def kill_and_resume(tmp_path: Path, kills: int, per_chain: int, seed: int, clips: int, frames: int) -> dict:
    """Run ``kills`` SIGKILLs in chains of ``per_chain``, each chain finished by a --resume."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    d = _videos(tmp_path / "vids", clips, frames)
    ref = tmp_path / "ref" / "full.h5"
    ref.parent.mkdir()
    t0 = time.monotonic()
    subprocess.run(_cmd(d, ref), env=env, check=True, capture_output=True)
    full_s = time.monotonic() - t0
    rng = np.random.default_rng(seed)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.h5"
    landed: list[str] = []
    hashes, leftovers, reused = [], [], []
    finished_first = 0  # runs that ended before their kill (not counted as kills)
    while len(landed) < kills:
        chain = 0
        while chain < per_chain and len(landed) < kills:
            proc = subprocess.Popen(_cmd(d, out, "--resume"), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=float(rng.uniform(0.2, 1.0)) * full_s)
                finished_first += 1  # a --resume that beat its kill: its file counts, and the chain starts over
                hashes.append(proc.returncode == 0 and P.content_hash(out) == P.content_hash(ref))
                out.unlink(missing_ok=True)
                continue
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the import and its workers, nothing else
                proc.wait()
            landed.append(_where(out, clips))
            chain += 1
            if out.exists():  # killed after the rename, before exit: the file is complete, nothing to resume
                break
        if out.exists():
            reused.append("-")
        else:
            done = subprocess.run(_cmd(d, out, "--resume"), env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            reused.append(done.stdout.split("; ")[1].split(" clips")[0] if "reused" in done.stdout else "0")
        hashes.append(P.content_hash(out) == P.content_hash(ref) and validate(out) == [])
        leftovers.append(sorted(p.name for p in out_dir.iterdir() if p.name != out.name))
        out.unlink()
    summary = Counter(landed)
    print(f"\n{kills} SIGKILLs (seed {seed}, uninterrupted import {full_s:.1f} s; {finished_first} runs ended "
          "before their kill), where they landed:")
    for where, n in sorted(summary.items()):
        print(f"  {n:3d}  {where}")
    print(f"  clips reused by the finishing --resume of each chain: {reused}")
    print(f"  left beside the output after each chain: {leftovers}")
    return {"landed": landed, "same_content": hashes, "leftovers": leftovers}


@pytest.fixture(scope="module")
def three_kills(tmp_path_factory) -> dict:
    return kill_and_resume(tmp_path_factory.mktemp("kill3"), kills=3, per_chain=3, seed=0, clips=8, frames=20)


@pytest.fixture(scope="module")
def twenty_kills(tmp_path_factory) -> dict:
    return kill_and_resume(tmp_path_factory.mktemp("kill20"), kills=20, per_chain=4, seed=1, clips=24, frames=60)


def _leftovers_of(result: dict) -> list[str]:
    return [name for names in result["leftovers"] for name in names]


def test_sigkill_resume_same_content(three_kills):
    assert len(three_kills["landed"]) == 3
    assert all(three_kills["same_content"])


@pytest.mark.xfail(strict=False, reason=ITEM9)
def test_sigkill_resume_leaves_no_temp_file(three_kills):
    assert _leftovers_of(three_kills) == []


@pytest.mark.slow
def test_twenty_sigkills_resume_same_content(twenty_kills):
    assert len(twenty_kills["landed"]) == 20
    assert all(twenty_kills["same_content"]) and len(twenty_kills["same_content"]) >= 5


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=ITEM9)
def test_twenty_sigkills_leave_no_temp_file(twenty_kills):
    assert _leftovers_of(twenty_kills) == []
