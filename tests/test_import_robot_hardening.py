"""robomimic on malformed input, and the importers' bad clips (``ImportPlan.bad``) in the pipeline:
exit 0 with a file ``pairs validate`` accepts, or exit 2 with one line naming the file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import run_cli
from import_fixtures import frame_img, write_robomimic

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.importers.pipeline import ImportConfig, run_import
from hralign.pairs.importers.source import ClipSource, H5Frames, ImportPlan
from hralign.pairs.validate import validate


def _import(path, tmp_path, *extra):
    return run_cli("pairs", "import", "robomimic", str(path), "--out", str(tmp_path / "o.h5"), "--workers", "1",
                   "--image-size", "0", "--state-keys", "robot0_eef_pos,robot0_gripper_qpos", *extra)


def _one_line_error(path, tmp_path, *extra) -> str:
    code, out, err = _import(path, tmp_path, *extra)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing at --out, no partial folder
    return err


@pytest.mark.parametrize("env_args,found", [(json.dumps(["Lift"]), " is a list"), (json.dumps("Lift"), " is a string"),
                                            (json.dumps({"env_name": "Lift", "env_kwargs": [1]}), "['env_kwargs'] is a list")])
def test_env_args_not_an_object_one_line(tmp_path, env_args, found):
    path = write_robomimic(tmp_path / "d.hdf5", [3, 3])
    with h5py.File(path, "r+") as h:
        h["data"].attrs["env_args"] = env_args
    err = _one_line_error(path, tmp_path)
    assert f"{path}: data.attrs['env_args']{found}, expected an object" in err and "--instruction" in err
    code, out, err = _import(path, tmp_path, "--instruction", "lift the cube")
    assert code == 0, err


@pytest.mark.parametrize("key,row,value,shown", [("actions", 2, np.nan, "nan"), ("obs/robot0_eef_pos", 0, -np.inf, "-inf")])
def test_non_finite_rows_refused_or_skipped(tmp_path, key, row, value, shown):
    path = write_robomimic(tmp_path / "d.hdf5", [3, 4, 3])
    with h5py.File(path, "r+") as h:
        h[f"data/demo_1/{key}"][row, 1] = value
    err = _one_line_error(path, tmp_path)
    assert f"clip demo_1: {path}: data/demo_1/{key} row {row}[1] is {shown}, expected a finite number" in err
    assert "--skip-bad" in err
    code, out, err = _import(path, tmp_path, "--skip-bad")
    assert code == 0, err
    assert "2 clips imported, 1 skipped" in out and "skipped demo_1:" in out
    assert validate(tmp_path / "o.h5") == []


def test_actions_that_are_not_numbers_one_line(tmp_path):
    path = write_robomimic(tmp_path / "d.hdf5", [3, 3])
    with h5py.File(path, "r+") as h:
        del h["data/demo_0/actions"]
        h["data/demo_0/actions"] = np.array([b"a", b"b", b"c"])
    err = _one_line_error(path, tmp_path)
    assert f"{path}: data/demo_0/actions is |S1 [3], expected numbers [T, D]" in err


@pytest.mark.parametrize("key,value,message", [
    ("data/demo_1/obs/agentview_image", np.zeros((3, 8, 8, 3), np.float32),
     "clip demo_1: {path}: data/demo_1/obs/agentview_image is float32 [3, 8, 8, 3], expected uint8 images"),
    ("data/demo_1", np.zeros(3), "{path}: data/demo_1 is a dataset, expected a group"),
    ("data", np.zeros(3), "{path}: no `data` group"),
], ids=["float-images", "demo-dataset", "data-dataset"])
def test_layout_that_is_not_robomimic_one_line(tmp_path, key, value, message):
    """Checked while planning, so nothing (not even a partial folder) is written."""
    path = write_robomimic(tmp_path / "d.hdf5", [3, 3])
    with h5py.File(path, "r+") as h:
        del h[key]
        h[key] = value
    assert message.format(path=path) in _one_line_error(path, tmp_path)


def _plan(tmp_path, bad):
    path = write_robomimic(tmp_path / "r.hdf5", [2])
    clip = ClipSource(key="demo_0", domain="robot", instruction="lift",
                      frames=H5Frames(path, "data/demo_0/obs/agentview_image", 10.0))
    return ImportPlan(clips=[clip], skipped=[("demo_9", "too short")], bad=bad)


def test_plan_bad_clips_stop_the_import_before_anything_is_written(tmp_path):
    plan = _plan(tmp_path, [("demo_1", "x.hdf5: row 3 is nan"), ("demo_2", "y")])
    with pytest.raises(HRAlignError, match=r"^clip demo_1: x.hdf5: row 3 is nan \(pass --skip-bad to skip such clips; "
                                           r"1 more bad clip\)$"):
        run_import(plan, tmp_path / "o.h5", ImportConfig(workers=1, image_size=None), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.hdf5"]
    rep = run_import(plan, tmp_path / "o.h5", ImportConfig(workers=1, image_size=None, skip_bad=True), progress=False)
    assert rep.clips["robot"] == 1
    assert rep.skipped == [("demo_9", "too short"), ("demo_1", "x.hdf5: row 3 is nan"), ("demo_2", "y")]
    np.testing.assert_array_equal(PairsFile(rep.out).read_clip("robot", 0)[0], frame_img(0, 32, 32))
