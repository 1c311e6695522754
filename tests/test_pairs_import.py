"""The import pipeline (workers, resampling, pairs, splits, resume), the registry, folder and robomimic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from import_fixtures import episode_arrays, frame_img, frame_number, write_mp4, write_robomimic

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.importers import IMPORTERS, get_importer, plan_import, register_importer
from hralign.pairs.importers import pipeline as P
from hralign.pairs.importers.folder import FolderConfig
from hralign.pairs.importers.robomimic import RobomimicConfig
from hralign.pairs.importers.source import ClipSource, ImportPlan, VideoSegment
from hralign.pairs.importers.video import read_h5_frames, read_segment
from hralign.pairs.validate import validate

REPO = Path(__file__).resolve().parents[1]


# -- a folder of videos -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """6 videos: 3 human, 3 robot; two pair keys (k0 with 2 human x 1 robot), an unpaired clip of each."""
    d = tmp_path_factory.mktemp("folder")
    rows = ["path,instruction,embodiment,start,end,pair"]
    for i, (emb, task, pair, seg) in enumerate([("human", "open the drawer", "k0", ("0.2", "1.0")),
                                                 ("human", "open the drawer", "k0", ("", "")),
                                                 ("robot", "open the drawer", "k0", ("", "")),
                                                 ("human", "wipe the table", "", ("", "")),
                                                 ("robot", "stack the cups", "k1", ("", "")),
                                                 ("robot", "wipe the table", "", ("", ""))]):
        write_mp4(d / f"{emb}/{i}.mp4", [frame_img(100 * (i % 2) + t) for t in range(12)])
        rows.append(f"{emb}/{i}.mp4,{task},{emb},{seg[0]},{seg[1]},{pair}")
    (d / "clips.csv").write_text("\n".join(rows) + "\n")
    return d


def _import(folder: Path, out: Path, **kw):
    cfg = P.ImportConfig(**{"image_size": 16, "workers": 1, **kw})
    return P.run_import(plan_import("folder", folder, FolderConfig(csv=str(folder / "clips.csv"))), out, cfg,
                        progress=False)


def test_folder_pairs_splits_and_segments(folder, tmp_path):
    rep = _import(folder, tmp_path / "o.h5", val_fraction=0.5, seed=3)
    assert rep.clips == {"human": 3, "robot": 3} and rep.pairs == 2
    assert rep.unpaired == [("k1", "no human clip (none in the source)")]
    assert validate(tmp_path / "o.h5") == []
    pf = PairsFile(tmp_path / "o.h5")
    assert pf.pairs.tolist() == [[0, 0], [1, 0]]  # every human x every robot clip of k0
    assert pf.clip_lengths("human").tolist() == [8, 12, 12]  # 0.2..1.0 s at 10 fps: frames 2..9
    # a pair key's clips share one split, so a pair never straddles train and validation
    cs_h, cs_r = pf.clip_split("human"), pf.clip_split("robot")
    assert cs_h[0] == cs_h[1] == cs_r[0] == pf.split[0] == pf.split[1]


def test_frames_keep_source_pixels(folder, tmp_path):
    _import(folder, tmp_path / "o.h5", image_size=None)
    pf = PairsFile(tmp_path / "o.h5")
    frames = pf.read_clip("human", 0)
    assert [frame_number(f, range(0, 12)) for f in frames] == list(range(2, 10))
    assert np.abs(frames.astype(int) - np.stack([frame_img(t) for t in range(2, 10)]).astype(int)).mean() < 3


def test_split_rule_is_seeded(folder, tmp_path):
    a = [PairsFile(_import(folder, tmp_path / f"{s}.h5", val_fraction=0.5, seed=s).out).clip_split("robot").tolist()
         for s in range(6)]
    assert len({tuple(x) for x in a}) > 1  # the seed changes the split
    again = PairsFile(_import(folder, tmp_path / "again.h5", val_fraction=0.5, seed=0).out).clip_split("robot").tolist()
    assert again == a[0]


@pytest.mark.parametrize("compression", [None, "gzip", "lzf", "blosc"])
def test_compressions_give_identical_frames(folder, tmp_path, compression):
    ref = PairsFile(_import(folder, tmp_path / "ref.h5", compression=None).out)
    pf = PairsFile(_import(folder, tmp_path / "c.h5", compression=compression).out)
    np.testing.assert_array_equal(pf.read_clip("robot", 1), ref.read_clip("robot", 1))
    assert validate(pf.path, deep=True) == []


def test_two_workers_same_content_as_one(folder, tmp_path):
    one = _import(folder, tmp_path / "1.h5", workers=1).out
    two = _import(folder, tmp_path / "2.h5", workers=2).out
    assert P.content_hash(one) == P.content_hash(two)


def test_human_only_file_is_valid(folder, tmp_path):
    csv = folder / "human.csv"
    csv.write_text("path,instruction,embodiment\nhuman/0.mp4,open the drawer,human\nhuman/3.mp4,wipe,human\n")
    code, out, err = run_cli("pairs", "import", "folder", str(folder), "--csv", str(csv), "--out", str(tmp_path / "h.h5"),
                             "--image-size", "16", "--workers", "1")
    assert code == 0, err
    assert "2 clips imported, 0 skipped, 0 pairs" in out
    code, out, err = run_cli("pairs", "validate", str(tmp_path / "h.h5"))
    assert code == 0 and "valid (0 pairs, 2 tasks, 2 human clips)" in out
    assert PairsFile(tmp_path / "h.h5").clip_split("human").shape == (2,)


# -- resume ------------------------------------------------------------------------------------------
def test_resume_after_exception_gives_same_content(folder, tmp_path, monkeypatch):
    full = _import(folder, tmp_path / "full.h5").out
    calls = {"n": 0}
    real = P._assemble_clip

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a kill after 3 clips are in
        return real(*a, **k)

    monkeypatch.setattr(P, "_assemble_clip", dying)
    out = tmp_path / "o.h5"
    with pytest.raises(KeyboardInterrupt):
        _import(folder, out)
    assert not out.exists() and P.partial_dir(out).is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # the writer's temp file is gone
    with pytest.raises(HRAlignError, match="pass --resume to continue it or --overwrite"):
        _import(folder, out)
    monkeypatch.setattr(P, "_assemble_clip", real)
    rep = _import(folder, out, resume=True)
    assert rep.reused == 4
    assert P.content_hash(out) == P.content_hash(full)
    assert not P.partial_dir(out).exists()


def test_resume_refuses_other_options(folder, tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    monkeypatch.setattr(P, "_add_pairs", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _import(folder, out)
    with pytest.raises(HRAlignError, match="other sources or options"):
        _import(folder, out, resume=True, image_size=24)


def test_sigkill_then_resume_same_hash(tmp_path):
    """A real SIGKILL of `hralign pairs import` midway; --resume finishes with the uninterrupted content."""
    d = tmp_path / "vids"
    rows = ["path,instruction,embodiment,pair"]
    for i in range(24):
        write_mp4(d / f"{i}.mp4", [frame_img(i + t) for t in range(40)], gop=40)
        rows.append(f"{i}.mp4,task {i % 3},{'human' if i % 2 else 'robot'},p{i // 2}")
    (d / "c.csv").write_text("\n".join(rows) + "\n")
    args = ["import", "folder", str(d), "--csv", str(d / "c.csv"), "--image-size", "32", "--workers", "1",
            "--compression", "gzip"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", "from hralign.cli.main import main; main()", "pairs"]
    subprocess.run(cmd + args + ["--out", str(tmp_path / "full.h5")], env=env, check=True, capture_output=True)
    out = tmp_path / "o.h5"
    proc = subprocess.Popen(cmd + args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = P.partial_dir(out)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(part.glob("clip_*.h5"))) < 6:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(part.glob("clip_*.h5")))
    assert 6 <= done < 24 and not out.exists()
    assert len(list(tmp_path.glob(".o.h5.*.tmp"))) == 1  # the killed writer's temporary file
    code = subprocess.run(cmd + args + ["--out", str(out), "--resume"], env=env, capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert "clips reused" in code.stdout
    assert P.content_hash(out) == P.content_hash(tmp_path / "full.h5")
    assert validate(out) == []
    assert list(tmp_path.glob(".o.h5.*")) == []  # the resumed run removed the killed one's temporary file


# -- folder bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("row, message", [("human/nope.mp4,x,human", "row 2: video 'human/nope.mp4' not found"),
                                          ("../outside.mp4,x,human", "row 2: path '../outside.mp4' is outside"),
                                          ("human/0.mp4,x,cat", "row 2: embodiment 'cat'")])
def test_folder_bad_rows_one_line(folder, tmp_path, row, message):
    (folder.parent / "outside.mp4").write_bytes(b"")
    csv = tmp_path / "bad.csv"
    csv.write_text(f"path,instruction,embodiment\n{row}\n")
    code, out, err = run_cli("pairs", "import", "folder", str(folder), "--csv", str(csv), "--out", str(tmp_path / "o.h5"))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert str(csv) in err
    assert list(tmp_path.iterdir()) == [csv]  # nothing half-written, no partial folder


# -- robomimic ---------------------------------------------------------------------------------------
def test_robomimic_frames_actions_state_masks(tmp_path):
    lengths = [5, 6, 4]
    path = write_robomimic(tmp_path / "lift_image.hdf5", lengths)
    code, out, err = run_cli("pairs", "import", "robomimic", str(path), "--out", str(tmp_path / "o.h5"),
                             "--image-size", "0", "--state-keys", "robot0_eef_pos,robot0_gripper_qpos", "--workers", "1")
    assert code == 0, err
    assert validate(tmp_path / "o.h5") == []
    pf = PairsFile(tmp_path / "o.h5")
    assert pf.tasks == ["Lift"] and pf.num_clips("robot") == 3
    assert pf.clip_split("robot").tolist() == [0, 0, 1]  # mask/train, mask/valid
    g = 0
    for e, n in enumerate(lengths):
        np.testing.assert_array_equal(pf.read_clip("robot", e), np.stack([frame_img(g + i, 32, 32) for i in range(n)]))
        a, s = episode_arrays(e, n)
        np.testing.assert_allclose(pf.read_clip("robot", e, name="actions"), a)
        np.testing.assert_allclose(pf.read_clip("robot", e, name="state"), np.concatenate([s, a], axis=1))
        g += n


def test_robomimic_filter_and_errors(tmp_path):
    path = write_robomimic(tmp_path / "d.hdf5", [3, 3, 3])
    plan = plan_import("robomimic", path, RobomimicConfig(filter_key="valid", state_keys="", instruction="lift the cube"))
    assert [c.key for c in plan.clips] == ["demo_2"] and plan.clips[0].instruction == "lift the cube"
    with pytest.raises(HRAlignError, match="cameras in the file: \\['agentview'\\]"):
        plan_import("robomimic", path, RobomimicConfig(camera="robot0_eye_in_hand"))
    with pytest.raises(HRAlignError, match="no mask/20_percent; masks in the file: \\['train', 'valid'\\]"):
        plan_import("robomimic", path, RobomimicConfig(filter_key="20_percent"))
    import h5py

    with h5py.File(path, "r+") as h:
        del h["data/demo_1/obs/robot0_eef_pos"]
        h["data/demo_1/obs/robot0_eef_pos"] = np.zeros((2, 3))
    plan = plan_import("robomimic", path, RobomimicConfig(state_keys="robot0_eef_pos"))
    assert [c.key for c in plan.clips] == ["demo_0", "demo_2"]
    assert plan.skipped == [("demo_1", "3 actions but robot0_eef_pos has 2 rows")]


# -- registry and readers ----------------------------------------------------------------------------
def test_registry_duplicate_and_unknown():
    assert {"lerobot", "robomimic", "folder"} <= set(IMPORTERS)
    with pytest.raises(HRAlignError, match="already registered"):
        register_importer("folder", FolderConfig, lambda root, cfg: ImportPlan(), "again")
    with pytest.raises(HRAlignError, match="valid importers: .*folder.*lerobot"):
        get_importer("lerobo")
    code, out, err = run_cli("pairs", "import", "lerobo", "x", "--out", "y.h5")
    assert code == 2 and "valid sources:" in err


def test_register_importer_rejects_clashing_options():
    @dataclass
    class Clash:
        fps: float = 1.0

    with pytest.raises(HRAlignError, match="`fps` clashes"):
        register_importer("clash-test", Clash, lambda root, cfg: ImportPlan(), "x")
    assert "clash-test" not in IMPORTERS


def test_read_segment_and_h5_errors(tmp_path):
    v = write_mp4(tmp_path / "v.mp4", [frame_img(t) for t in range(10)], gop=4)
    frames, times = read_segment(v, 0.3, 0.7)  # starts mid-GOP: the seek lands on keyframe 0.0 s, frames 0-2 dropped
    assert [frame_number(f, range(10)) for f in frames] == [3, 4, 5, 6]
    frames, _ = read_segment(v, 0.3 + 1e-4, 0.7 - 1e-4)  # float rounding of LeRobot timestamps is absorbed
    assert [frame_number(f, range(10)) for f in frames] == [3, 4, 5, 6]
    np.testing.assert_allclose(times, [0, 0.1, 0.2, 0.3], atol=1e-6)
    with pytest.raises(HRAlignError, match="v.mp4: .*past the end"):
        read_segment(v, 0.5, 1.5)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(HRAlignError, match="junk.mp4: cannot decode"):
        read_segment(tmp_path / "junk.mp4")
    with pytest.raises(HRAlignError, match="no dataset 'x'"):
        read_h5_frames(write_robomimic(tmp_path / "r.hdf5", [2]), "x", 10)


def test_pipeline_helpers():
    np.testing.assert_array_equal(P.resample_indices(np.arange(10) / 30, 10), [0, 3, 6, 9])
    np.testing.assert_array_equal(P.resample_indices(np.arange(4) / 10, 30), [0, 1, 2, 3])  # never upsamples
    np.testing.assert_array_equal(P.nearest_rows([0.0, 0.1, 0.2], [0.04, 0.06, 0.5]), [0, 1, 2])
    out = P.resize_frames(np.full((2, 10, 20, 3), 200, np.uint8), 8, "letterbox")
    assert out.shape == (2, 8, 8, 3) and out[:, 0].max() == 0 and out[:, 4].min() == 200
    clips = [ClipSource("a", "human", "t", VideoSegment(Path("x")), pair_key="k"),
             ClipSource("b", "robot", "t", VideoSegment(Path("x")), pair_key="k", split=1),
             ClipSource("c", "robot", "t", VideoSegment(Path("x")))]
    assert P.clip_splits(clips, 0.0, 0)[:2] == [1, 1]  # an explicit split carries to the key's other clips
    with pytest.raises(HRAlignError, match="`resize`"):
        P.ImportConfig(resize="stretch")
    with pytest.raises(HRAlignError, match="appears twice"):
        P.run_import(ImportPlan(clips=[clips[0], clips[0]]), "/tmp/never.h5")


def test_writer_chunk_copy_checks_filters_and_clip_split_validates(tmp_path):
    import h5py

    from hralign.pairs import PairsWriter
    from hralign.pairs.writer import frame_filter

    with h5py.File(tmp_path / "shard.h5", "w") as h:
        h.create_dataset("frames", data=np.zeros((2, 8, 8, 3), np.uint8), chunks=(1, 8, 8, 3), **frame_filter("gzip"))
        with PairsWriter(tmp_path / "o.h5", compression="blosc") as w:
            with pytest.raises(HRAlignError, match="expected one frame per chunk with 'blosc'"):
                w.add_clip_chunks("human", h["frames"], "t")
            w.abort()
    with pytest.raises(HRAlignError, match="`compression`"):
        frame_filter("zip")
    with PairsWriter(tmp_path / "s.h5") as w:
        w.add_clip("human", np.zeros((2, 8, 8, 3), np.uint8), "t", split=1)
        assert (w.num_clips("human"), w.num_frames("human"), w.num_pairs) == (1, 2, 0)
    with h5py.File(tmp_path / "s.h5", "r+") as h:
        h["human/clip_split"][0] = 7
    assert any("clip_split: values other than 0" in p for p in validate(tmp_path / "s.h5"))
