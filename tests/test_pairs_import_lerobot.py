"""`hralign pairs import lerobot`: v3.0 (episodes cut from multi-episode mp4s) and v2.1, as shipped."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from import_fixtures import CAMERA, TASKS, episode_arrays, frame_img, frame_number, write_lerobot_v21, write_lerobot_v3

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.importers import plan_import
from hralign.pairs.importers.lerobot import LeRobotConfig
from hralign.pairs.importers.pipeline import ImportConfig, run_import
from hralign.pairs.validate import validate

LENGTHS = [7, 9, 6, 8, 5]


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot") / "v3"
    return root, write_lerobot_v3(root, LENGTHS, per_file=3)


def _check(path, expect, step=1):
    """Every clip's frames are its episode's source frames (codec tolerance), actions/state its rows."""
    assert validate(path) == []
    pf = PairsFile(path)
    assert pf.domains == ("robot",) and pf.num_pairs == 0
    assert pf.num_clips("robot") == len(expect)
    for c, (e, (g0, n, task)) in enumerate(sorted(expect.items())):
        steps = np.arange(0, n, step)
        assert pf.clip_lengths("robot")[c] == len(steps)
        assert pf.instruction(pf.clip_tasks("robot")[c]) == task
        frames = pf.read_clip("robot", c)
        got = [frame_number(f, range(max(0, g0 - 3), g0 + n + 3)) for f in frames]
        assert got == (g0 + steps).tolist()  # exact frames: no frame of a neighbouring episode, none missing
        ref = np.stack([frame_img(g0 + s) for s in steps])
        assert np.abs(frames.astype(int) - ref.astype(int)).mean() < 3.0
        a, s = episode_arrays(e, n)
        np.testing.assert_allclose(pf.read_clip("robot", c, name="actions"), a[steps], atol=1e-6)
        np.testing.assert_allclose(pf.read_clip("robot", c, name="state"), s[steps], atol=1e-6)
    assert pf.clip_split("robot") is not None


def test_v3_episodes_cut_from_multi_episode_mp4(v3, tmp_path):
    root, expect = v3
    plan = plan_import("lerobot", root, LeRobotConfig())
    assert [c.frames.path.name for c in plan.clips] == ["file-000.mp4"] * 3 + ["file-001.mp4"] * 2
    rep = run_import(plan, tmp_path / "o.h5", ImportConfig(image_size=None, workers=1), progress=False)
    assert rep.clips["robot"] == 5 and rep.pairs == 0 and not rep.skipped
    _check(tmp_path / "o.h5", expect)


def test_v3_fps_resampling_keeps_nearest_rows(v3, tmp_path):
    root, expect = v3
    code, out, err = run_cli("pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"), "--fps", "5",
                             "--image-size", "0", "--workers", "2", "--camera", CAMERA)
    assert code == 0, err
    assert "5 clips imported, 0 skipped, 0 pairs" in out
    _check(tmp_path / "o.h5", expect, step=2)


def test_v3_av1_gop2_as_lerobot_encodes(tmp_path, monkeypatch):
    monkeypatch.setenv("SVT_LOG", "1")
    root = tmp_path / "av1"
    expect = write_lerobot_v3(root, [5, 6, 4], per_file=3, h=64, w=64, codec="libsvtav1", gop=2)
    rep = run_import(plan_import("lerobot", root), tmp_path / "o.h5", ImportConfig(image_size=None, workers=1),
                     progress=False)
    assert rep.clips["robot"] == 3
    pf = PairsFile(rep.out)
    for c, (g0, n, _) in enumerate(expect.values()):
        assert [frame_number(f, range(max(0, g0 - 3), g0 + n + 3)) for f in pf.read_clip("robot", c)] == list(range(g0, g0 + n))


def test_v21_one_file_per_episode(tmp_path):
    expect = write_lerobot_v21(tmp_path / "v21", LENGTHS[:3])
    code, out, err = run_cli("pairs", "import", "lerobot", str(tmp_path / "v21"), "--out", str(tmp_path / "o.h5"),
                             "--image-size", "0", "--workers", "1")
    assert code == 0, err
    _check(tmp_path / "o.h5", expect)


def test_info_splits_and_resize(tmp_path):
    write_lerobot_v3(tmp_path / "d", [4, 4, 4], splits={"train": "0:2", "val": "2:3"})
    rep = run_import(plan_import("lerobot", tmp_path / "d"), tmp_path / "o.h5",
                     ImportConfig(image_size=16, resize="letterbox", workers=1), progress=False)
    pf = PairsFile(rep.out)
    assert pf.frame_shape("robot") == (16, 16, 3)
    assert pf.clip_split("robot").tolist() == [0, 0, 1]
    assert pf.read_clip("robot", 0)[:, :2].max() == 0  # letterbox bars (48x64 -> 12x16 centred, 2 rows of black)


def _one_line_error(args, tmp_path):
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o.h5").exists()
    return err


def test_missing_info_json(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _one_line_error(["pairs", "import", "lerobot", str(tmp_path / "empty"), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert "meta/info.json: not found" in err


def test_unknown_codebase_version(tmp_path):
    root = tmp_path / "d"
    write_lerobot_v3(root, [3])
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v1.6"
    (root / "meta/info.json").write_text(json.dumps(info))
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert "codebase_version 'v1.6'" in err and "v3.0" in err


def test_timestamps_past_end_of_video(tmp_path):
    root = tmp_path / "d"
    write_lerobot_v3(root, [4, 4])
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[1][f"videos/{CAMERA}/from_timestamp"] += 5.0
    rows[1][f"videos/{CAMERA}/to_timestamp"] += 5.0
    pq.write_table(pa.Table.from_pylist(rows), path)
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"), "--workers", "1"],
                          tmp_path)
    assert "file-000.mp4" in err and "past the end" in err and "episode_000001" in err


def test_truncated_mp4_exit_2_or_skipped(tmp_path):
    root = tmp_path / "d"
    write_lerobot_v3(root, [4, 4, 4, 4], per_file=2)
    video = root / f"videos/{CAMERA}/chunk-000/file-001.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"), "--workers", "1"],
                          tmp_path)
    assert "file-001.mp4" in err and "--skip-bad" in err
    code, out, err = run_cli("pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"), "--workers", "1",
                             "--skip-bad", "--overwrite")
    assert code == 0, err
    assert "2 clips imported, 2 skipped" in out and err.count("warning: skipping clip episode_00000") == 2
    assert validate(tmp_path / "o.h5") == []


def test_unknown_camera_lists_video_features(tmp_path):
    write_lerobot_v3(tmp_path / "d", [3])
    with pytest.raises(HRAlignError, match="video features: \\['observation.images.top'\\]"):
        plan_import("lerobot", tmp_path / "d", LeRobotConfig(camera="observation.images.wrist"))


def test_tasks_are_the_episode_tasks(v3):
    plan = plan_import("lerobot", v3[0])
    assert [c.instruction for c in plan.clips] == [TASKS[e % 2] for e in range(len(LENGTHS))]


# -- real-world variations and malformed input: never a wrong file, one line naming the file otherwise --
def _import(root, tmp_path, *extra):
    return run_cli("pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"), "--image-size", "0",
                   "--workers", "1", *extra)


def _rename_features(root, names: dict) -> None:
    """Rename features in info.json and in every data parquet (as datasets that say `actions`/`state` ship)."""
    info = json.loads((root / "meta/info.json").read_text())
    info["features"] = {names.get(k, k): v for k, v in info["features"].items()}
    (root / "meta/info.json").write_text(json.dumps(info))
    for f in (root / "data").rglob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.rename_columns([names.get(c, c) for c in t.column_names]), f)


def test_v3_actions_and_state_keys_are_suggested(tmp_path):
    root = tmp_path / "d"
    expect = write_lerobot_v3(root, [4, 5])
    _rename_features(root, {"action": "actions", "observation.state": "state"})
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert "no feature 'action'" in err and "did you mean 'actions'? pass --action-key actions" in err
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5"),
                           "--action-key", "actions"], tmp_path)
    assert "no feature 'observation.state'" in err and "pass --state-key state" in err
    code, out, err = _import(root, tmp_path, "--action-key", "actions", "--state-key", "state")
    assert code == 0, err
    _check(tmp_path / "o.h5", expect)


@pytest.mark.parametrize("convention", ["length", "length-1"])
def test_v3_to_timestamp_conventions_keep_the_last_frame(tmp_path, convention):
    """to_timestamp = from + length/fps, or from + (length-1)/fps: every episode keeps all its frames."""
    root = tmp_path / "d"
    expect = write_lerobot_v3(root, [4, 5, 3], per_file=3)
    if convention == "length-1":
        path = root / "meta/episodes/chunk-000/file-000.parquet"
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            r[f"videos/{CAMERA}/to_timestamp"] -= 0.1  # fps 10
        pq.write_table(pa.Table.from_pylist(rows), path)
    code, out, err = _import(root, tmp_path)
    assert code == 0, err
    _check(tmp_path / "o.h5", expect)


@pytest.mark.parametrize("version,missing", [
    ("v3", "data/chunk-000/file-001.parquet"), ("v3", f"videos/{CAMERA}/chunk-000/file-001.mp4"),
    ("v21", "data/chunk-000/episode_000002.parquet"), ("v21", f"videos/chunk-000/{CAMERA}/episode_000002.mp4")])
def test_missing_data_parquet_or_video_same_way(tmp_path, version, missing):
    """Without --skip-bad: one line naming the missing file, nothing written; with it: its episodes skipped."""
    root = tmp_path / "d"
    if version == "v3":
        write_lerobot_v3(root, [3, 3, 3, 3], per_file=2)
    else:
        write_lerobot_v21(root, [3, 3, 3, 3])
    (root / missing).unlink()
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert missing in err and "not found" in err and "--skip-bad" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no partial folder, no temporary file
    code, out, err = _import(root, tmp_path, "--skip-bad")
    assert code == 0, err
    n_bad = 2 if version == "v3" else 1
    assert f"{4 - n_bad} clips imported, {n_bad} skipped" in out
    assert f"skipped episode_000002: {root / missing}" in out
    assert validate(tmp_path / "o.h5") == []


def test_ragged_action_rows_are_refused_not_reshaped(tmp_path):
    """Rows of 3 and 1 values sum to 2 per row: once silently reshaped into a wrong matrix."""
    root = tmp_path / "d"
    write_lerobot_v3(root, [3, 4, 3], per_file=3)
    path = root / "data/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    actions = t.column("action").to_pylist()
    actions[4], actions[5] = [1.0, 2.0, 3.0], [4.0]  # episode 1's rows 1 and 2 (file rows 4 and 5)
    t = t.set_column(t.column_names.index("action"), "action", pa.array(actions, pa.list_(pa.float32())))
    pq.write_table(t, path)
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert f"{path}: episode 1, row 4: `action` has 3 values but row 3 has 2" in err and "clip episode_000001" in err
    code, out, err = _import(root, tmp_path, "--skip-bad")
    assert code == 0, err
    assert "2 clips imported, 1 skipped" in out and validate(tmp_path / "o.h5") == []


@pytest.mark.parametrize("column,value,shown", [("action", float("nan"), "nan"), ("observation.state", float("inf"), "inf"),
                                                ("action", None, "nan")])
def test_non_finite_rows_are_never_written(tmp_path, column, value, shown):
    root = tmp_path / "d"
    write_lerobot_v21(root, [3, 4])
    path = root / "data/chunk-000/episode_000001.parquet"
    t = pq.read_table(path)
    rows = t.column(column).to_pylist()
    rows[2][1] = value
    t = t.set_column(t.column_names.index(column), column, pa.array(rows, t.schema.field(column).type))
    pq.write_table(t, path)
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert f"{path}: episode 1, row 2: `{column}`[1] is {shown}" in err
    code, out, err = _import(root, tmp_path, "--skip-bad")
    assert code == 0, err
    assert "1 clips imported, 1 skipped" in out and validate(tmp_path / "o.h5") == []


@pytest.mark.parametrize("change,message", [
    (lambda info: [info], "meta/info.json: top level is a list, expected an object"),
    (lambda info: {**info, "features": list(info["features"])}, "`features` is a list, expected an object"),
    (lambda info: {**info, "data_path": "data/chunk-{episode_chunk:03d}/file-{file_index:03d}.parquet"},
     "`data_path` 'data/chunk-{episode_chunk:03d}/file-{file_index:03d}.parquet' has unknown placeholder {episode_chunk}"),
    (lambda info: {**info, "video_path": "videos/{camera}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"},
     "`video_path` 'videos/{camera}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4' has unknown placeholder {camera}"),
    (lambda info: {**info, "data_path": 3}, "`data_path` is a number, expected a path template string"),
    (lambda info: {**info, "fps": "30"}, "`fps` is '30', expected a positive number"),
    (lambda info: {**info, "splits": ["train"]}, "`splits` is a list, expected an object"),
    (lambda info: {**info, "video_path": "../{video_key}/file-{file_index:03d}.mp4"},
     "gives '../cam/file-000.mp4', outside the dataset root"),
], ids=["info-list", "features-list", "data_path-placeholder", "video_path-placeholder", "data_path-number",
        "fps-string", "splits-list", "video_path-escapes-root"])
def test_malformed_info_json_one_line(tmp_path, change, message):
    root = tmp_path / "d"
    write_lerobot_v3(root, [3])
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(change(info)))
    err = _one_line_error(["pairs", "import", "lerobot", str(root), "--out", str(tmp_path / "o.h5")], tmp_path)
    assert message in err and "meta/info.json" in err
