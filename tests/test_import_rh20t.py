"""RH20T importer: fixtures in RH20T's real layout (np.save'd dict .npy files, cam_<serial>/color.mp4,
RH20T_cfgN/ folders, _human and _human_N scenes), the plan, an end-to-end import and the bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from _media import make_frames, mean_colors, write_video
from conftest import run_cli
from hralign.errors import HRAlignError
from hralign.pairs.importers.rh20t import RH20TConfig, plan
from hralign.pairs.importers.safe_pickle import UnsafePickleError, load_pickled_npy

T0 = 1_631_500_000_000  # RH20T timestamps are Unix milliseconds
CAMS = ("036422060215", "104122063550")


def _robot_scene(root: Path, name: str, cams=CAMS, n=6, rating: int | None = 9, seed=0, metadata=True) -> Path:
    scene = root / name
    tcp, gripper = {}, {}
    for j, serial in enumerate(cams):
        cam = scene / f"cam_{serial}"
        write_video(cam / "color.mp4", make_frames(n, seed=seed + j))
        color = [T0 + 100 * k for k in range(n)]
        np.save(cam / "timestamps.npy", {"color": color, "depth": color})  # what RH20T ships: a pickled dict
        # tcp/gripper at their own (offset) timestamps, as the robot logs them; tcp = serial index, k, ...
        tcp[serial] = [{"timestamp": T0 + 100 * k + 7, "tcp": np.array([j, k, 0.5, 1, 0, 0, 0], dtype=np.float64),
                        "robot_ft": np.zeros(6)} for k in range(n)][::-1]  # unsorted on purpose (the API sorts)
        gripper[serial] = {T0 + 100 * k - 5: {"gripper_command": [80.0 - k, 77, 200], "gripper_info": [40.0 + k, 0, 0]}
                           for k in range(n)}
    (scene / "transformed").mkdir(parents=True)
    np.save(scene / "transformed" / "tcp.npy", tcp)
    np.save(scene / "transformed" / "gripper.npy", gripper)
    if metadata:
        meta = {"calib": T0 - 1000, "finish_time": T0 + 100 * n, "calib_quality": 2}
        if rating is not None:
            meta["rating"] = rating
        (scene / "metadata.json").write_text(json.dumps(meta))
    return scene


def _human_scene(root: Path, name: str, cams=CAMS, n=5, seed=5) -> Path:
    scene = root / name
    for j, serial in enumerate(cams):
        cam = scene / f"cam_{serial}"
        write_video(cam / "color.mp4", make_frames(n, seed=seed + j))
        np.save(cam / "timestamps.npy", {"color": [T0 + 100 * k for k in range(n)]})
    return scene


@pytest.fixture(scope="module")
def rh20t_root(tmp_path_factory) -> Path:
    """Two cfg folders; a scene with two human takes (the second with one camera), a robot scene
    without a human partner, a human scene without a robot scene, a low-rated and an unrated scene."""
    root = tmp_path_factory.mktemp("rh20t")
    cfg1, cfg2 = root / "RH20T_cfg1", root / "RH20T_cfg2"
    a = "task_0001_user_0001_scene_0001_cfg_0001"
    _robot_scene(cfg1, a)
    _human_scene(cfg1, a + "_human")
    _human_scene(cfg1, a + "_human_2", cams=CAMS[:1], seed=9)
    _robot_scene(cfg1, "task_0002_user_0001_scene_0002_cfg_0001", n=3)  # no human partner
    _human_scene(cfg2, "task_0003_user_0002_scene_0001_cfg_0002_human", n=3)  # no robot partner
    low = "task_0004_user_0002_scene_0002_cfg_0002"
    _robot_scene(cfg2, low, rating=1, n=3)
    _human_scene(cfg2, low + "_human", n=3)
    unrated = "task_0004_user_0002_scene_0003_cfg_0002"
    _robot_scene(cfg2, unrated, metadata=False, n=3, seed=2)
    _human_scene(cfg2, unrated + "_human", n=3)
    (root / "task_description.json").write_text(json.dumps({
        "task_0001": {"task_description_english": "Press the button from top to bottom.",
                      "task_description_chinese": "从上向下按按钮"}}))
    return root


def test_plan_pairs_by_scene_and_camera(rh20t_root):
    p = plan(rh20t_root, RH20TConfig(task_descriptions=str(rh20t_root / "task_description.json")))
    keys = {c.key: c for c in p.clips}
    a = "task_0001_user_0001_scene_0001_cfg_0001"
    assert set(keys) == {
        f"{a}/cam_{CAMS[0]}", f"{a}/cam_{CAMS[1]}", f"{a}_human/cam_{CAMS[0]}", f"{a}_human/cam_{CAMS[1]}",
        f"{a}_human_2/cam_{CAMS[0]}",
        *(f"task_0004_user_0002_scene_000{s}_cfg_0002{h}/cam_{c}" for s in (2, 3) for h in ("", "_human") for c in CAMS)}
    # same scene + same camera = one pair key; the _human_2 take joins camera 0's key
    assert keys[f"{a}_human_2/cam_{CAMS[0]}"].pair_key == keys[f"{a}/cam_{CAMS[0]}"].pair_key == f"{a}/cam_{CAMS[0]}"
    assert keys[f"{a}_human/cam_{CAMS[1]}"].pair_key == f"{a}/cam_{CAMS[1]}"
    assert {c.domain for c in p.clips if "_human" in c.key} == {"human"}
    # instruction from task_description.json, fallback to the task id
    assert keys[f"{a}/cam_{CAMS[0]}"].instruction == "Press the button from top to bottom."
    assert keys[f"task_0004_user_0002_scene_0002_cfg_0002/cam_{CAMS[0]}"].instruction == "task_0004"
    skipped = dict(p.skipped)
    assert "no human scene" in skipped["task_0002_user_0001_scene_0002_cfg_0001"]
    assert "no robot partner" in skipped["task_0003_user_0002_scene_0001_cfg_0002_human"]


def test_plan_actions_state_follow_timestamps(rh20t_root):
    p = plan(rh20t_root, RH20TConfig())
    robot = next(c for c in p.clips if c.key == f"task_0001_user_0001_scene_0001_cfg_0001/cam_{CAMS[1]}")
    assert robot.step_times_s is None and robot.human is None if hasattr(robot, "human") else True
    assert robot.state.shape == (6, 8) and robot.actions.shape == (6, 8)
    assert robot.state.dtype == np.float32
    # tcp logged 7 ms after frame k is frame k's pose; sorted although the file lists it backwards
    np.testing.assert_allclose(robot.state[:, 0], 1.0)  # this camera's frame (serial index 1)
    np.testing.assert_allclose(robot.state[:, 1], np.arange(6))
    np.testing.assert_allclose(robot.state[:, 7], 40 + np.arange(6))  # gripper_info width
    np.testing.assert_allclose(robot.actions[:, 1], [1, 2, 3, 4, 5, 5])  # next pose; last repeats
    np.testing.assert_allclose(robot.actions[:, 7], 80 - np.arange(6))  # gripper_command width


def test_plan_filters(rh20t_root):
    p = plan(rh20t_root, RH20TConfig(min_rating=2, cameras=CAMS[0]))
    keys = {c.key for c in p.clips}
    assert all(k.endswith(CAMS[0]) for k in keys)
    assert not any(k.startswith("task_0004") for k in keys)
    skipped = dict(p.skipped)
    assert "rating 1 < --min-rating 2" in skipped["task_0004_user_0002_scene_0002_cfg_0002"]
    assert "no `rating`" in skipped["task_0004_user_0002_scene_0003_cfg_0002"]
    assert "robot partner" in skipped["task_0004_user_0002_scene_0002_cfg_0002_human"]
    # minimum length: the 3-frame scenes (0.2 s) go, the 6-frame robot / 5-frame human (0.5 / 0.4 s) stay
    p = plan(rh20t_root, RH20TConfig(min_length_s=0.3))
    assert {c.key.split("/")[0] for c in p.clips} == {"task_0001_user_0001_scene_0001_cfg_0001",
                                                      "task_0001_user_0001_scene_0001_cfg_0001_human",
                                                      "task_0001_user_0001_scene_0001_cfg_0001_human_2"}
    assert any("< --min-length-s 0.3" in r for _, r in p.skipped)


def test_config_checks(tmp_path):
    with pytest.raises(HRAlignError, match="task_descriptions"):
        RH20TConfig(task_descriptions=str(tmp_path / "nope.json"))
    with pytest.raises(HRAlignError, match="min_rating"):
        RH20TConfig(min_rating="high")
    with pytest.raises(HRAlignError, match="not a directory"):
        plan(tmp_path / "missing", RH20TConfig())
    with pytest.raises(HRAlignError, match="no RH20T scene folders"):
        plan(tmp_path, RH20TConfig())


def test_human_scene_without_robot_is_skipped_and_reported(tmp_path):
    """A `_human` scene with no robot partner -> a skip with its reason (and the CLI exits 2
    with one line when nothing is left to import; nothing is written)."""
    root = tmp_path / "rh20t"
    _human_scene(root, "task_0009_user_0001_scene_0001_cfg_0001_human", n=3)
    p = plan(root, RH20TConfig())
    assert p.clips == []
    assert p.skipped == [("task_0009_user_0001_scene_0001_cfg_0001_human",
                          f"human scene has no robot partner: no folder task_0009_user_0001_scene_0001_cfg_0001 under {root}")]
    out = tmp_path / "out.h5"
    code, stdout, stderr = run_cli("pairs", "import", "rh20t", str(root), "--out", str(out))
    assert code == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1 and "no robot partner" in stderr
    assert not out.exists() and not any(p.name.startswith(".out.h5") for p in tmp_path.iterdir())


def _evil_npy(path: Path, sentinel: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    np.save(path, np.array({"color": Evil()}, dtype=object), allow_pickle=True)


def test_malicious_pickle_refused_nothing_runs(tmp_path):
    """An RH20T .npy whose pickle would run code is refused with one line; nothing runs."""
    root = tmp_path / "rh20t"
    name = "task_0001_user_0001_scene_0001_cfg_0001"
    scene = _robot_scene(root, name, n=3)
    _human_scene(root, name + "_human", n=3)
    sentinel = tmp_path / "PWNED"
    _evil_npy(scene / f"cam_{CAMS[0]}" / "timestamps.npy", sentinel)
    with pytest.raises(UnsafePickleError, match="refused to unpickle global `posix.system`|refused to unpickle global `os.system`"):
        plan(root, RH20TConfig())
    out = tmp_path / "out.h5"
    code, stdout, stderr = run_cli("pairs", "import", "rh20t", str(root), "--out", str(out))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "timestamps.npy" in lines[0] and "system" in lines[0]
    assert not sentinel.exists()
    assert not out.exists()


def test_safe_pickle_forms(tmp_path):
    d = {"cam": [{"timestamp": 1, "tcp": np.arange(7.0)}], 5: {"w": [1, 2.5, "x"]}, "s": np.float32(2), "t": (1, None)}
    np.save(tmp_path / "a.npy", d)
    got = load_pickled_npy(tmp_path / "a.npy")
    np.testing.assert_array_equal(got["cam"][0]["tcp"], np.arange(7.0))
    assert got[5] == {"w": [1, 2.5, "x"]} and got["s"] == np.float32(2) and got["t"] == (1, None)
    import pickle

    for proto in (2, 5):
        (tmp_path / f"raw{proto}.pkl").write_bytes(pickle.dumps(d, protocol=proto))
        np.testing.assert_array_equal(load_pickled_npy(tmp_path / f"raw{proto}.pkl")["cam"][0]["tcp"], np.arange(7.0))
    # files written by numpy 1.x name numpy.core.* (RH20T was released before numpy 2)
    old = pickle.dumps(d, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    (tmp_path / "np1.pkl").write_bytes(old)
    np.testing.assert_array_equal(load_pickled_npy(tmp_path / "np1.pkl")["cam"][0]["tcp"], np.arange(7.0))
    np.save(tmp_path / "plain.npy", np.arange(4))
    np.testing.assert_array_equal(load_pickled_npy(tmp_path / "plain.npy"), np.arange(4))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-20])
    with pytest.raises(HRAlignError, match="trunc.npy: not a readable pickle"):
        load_pickled_npy(tmp_path / "trunc.npy")
    for bad in (b"cbuiltins\neval\n(S'1'\ntR.", b"csubprocess\nPopen\n(S'ls'\ntR."):
        (tmp_path / "bad.pkl").write_bytes(bad)
        with pytest.raises(UnsafePickleError, match="bad.pkl: refused"):
            load_pickled_npy(tmp_path / "bad.pkl")


def _forged_npy(path: Path, descr: str, shape: tuple[int, ...]) -> None:
    """A .npy whose header declares ``shape`` (7 TiB of float64) over a few bytes of data."""
    from numpy.lib import format as npy_format

    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)


@pytest.mark.parametrize("descr, found", [("<f8", "declares float64 (1000000, 1000000), 8000000000128 bytes with "
                                                  "the header, but the file holds 192 bytes"),
                                          ("|O", "only 64 bytes follow the header; expected at least 1000000000000")])
def test_npy_header_with_enormous_shape_refused_before_allocating(tmp_path, descr, found):
    shape = (10**6, 10**6) if descr == "<f8" else (10**12,)
    _forged_npy(tmp_path / "big.npy", descr, shape)
    with pytest.raises(HRAlignError, match="big.npy: .npy header") as e:
        load_pickled_npy(tmp_path / "big.npy")  # before the check: MemoryError "Unable to allocate 7.28 TiB"
    assert found in str(e.value)
    np.save(tmp_path / "short.npy", np.arange(6.0))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])  # one float64 missing
    with pytest.raises(HRAlignError, match=r"short.npy: .*\(6,\), 176 bytes with the header, but the file holds 168"):
        load_pickled_npy(tmp_path / "short.npy")
    # in a scene: the robot camera is skipped naming the file; no clip is left, so the import stops with one line
    root = tmp_path / "rh20t"
    name = "task_0001_user_0001_scene_0001_cfg_0001"
    scene = _robot_scene(root, name, cams=CAMS[:1], n=3)
    _human_scene(root, name + "_human", cams=CAMS[:1], n=3)
    _forged_npy(scene / f"cam_{CAMS[0]}" / "timestamps.npy", descr, shape)
    p = plan(root, RH20TConfig())
    assert p.clips == [] and "timestamps.npy: .npy header declares" in dict(p.skipped)[f"{name}/cam_{CAMS[0]}"]
    out = tmp_path / "out.h5"
    code, _, stderr = run_cli("pairs", "import", "rh20t", str(root), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "timestamps.npy" in stderr and not out.exists()


def test_end_to_end_import(rh20t_root, tmp_path):
    from hralign.pairs.importers.pipeline import ImportConfig, run_import
    from hralign.pairs.reader import PairsFile
    from hralign.pairs.validate import validate

    p = plan(rh20t_root, RH20TConfig(task_descriptions=str(rh20t_root / "task_description.json"), min_rating=2))
    out = tmp_path / "rh20t.h5"
    report = run_import(p, out, ImportConfig(image_size=None, workers=1, compression="lzf"), progress=False)
    assert validate(out) == []
    lines = report.lines()  # what the CLI prints: one line per skipped scene/clip, then the counts
    assert "skipped task_0003_user_0002_scene_0001_cfg_0002_human: human scene has no robot partner" in "\n".join(lines)
    assert lines[-1] == f"5 clips imported, {len(p.skipped)} skipped, 3 pairs"
    pf = PairsFile(out)
    assert pf.num_clips("robot") == 2 and pf.num_clips("human") == 3
    assert pf.num_pairs == 3 == report.pairs  # camera 0: 2 human takes x 1 robot; camera 1: 1 x 1
    assert pf.tasks == ["Press the button from top to bottom."]
    for (h, r) in pf.pairs:
        assert pf.clip_tasks("human")[h] == pf.clip_tasks("robot")[r]
    # frames are the source pixels (codec tolerance); actions/state survive
    robot_keys = [c.key for c in p.clips if c.domain == "robot"]
    for ci, key in enumerate(robot_keys):
        j = CAMS.index(key.split("cam_")[1])
        np.testing.assert_allclose(mean_colors(pf.read_clip("robot", ci)), mean_colors(make_frames(6, seed=j)), atol=4)
        np.testing.assert_allclose(pf.read_clip("robot", ci, name="state")[:, 1], np.arange(6))
    assert pf.frame_shape("robot") == (32, 48, 3)


def test_task_descriptions_file(tmp_path):
    from hralign.pairs.importers.rh20t import load_task_descriptions

    f = tmp_path / "task_description.json"
    f.write_text(json.dumps({"task_0001": {"task_description_english": " Push  the block. "}, "task_0002": "Pull it",
                             "task_0003": {"task_description_chinese": "只有中文"}}))
    assert load_task_descriptions(f) == {"task_0001": "Push the block.", "task_0002": "Pull it"}
    f.write_text("[]")
    with pytest.raises(HRAlignError, match="task_description.json: expected a non-empty JSON object"):
        load_task_descriptions(f)


def test_nan_tcp_refused_naming_the_scene_transformed_folder(tmp_path):
    """NaN in a tcp sample reaches no file: exit 2 naming the clip and the scene's transformed/ folder."""
    root = tmp_path / "rh"
    name = "task_0001_user_0001_scene_0001_cfg_0001"
    scene = _robot_scene(root, name, cams=CAMS[:1])
    _human_scene(root, name + "_human", cams=CAMS[:1])
    tcp = np.load(scene / "transformed" / "tcp.npy", allow_pickle=True).item()  # the test's own file
    tcp[CAMS[0]][2]["tcp"][1] = np.nan
    np.save(scene / "transformed" / "tcp.npy", tcp)
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "import", "rh20t", str(root), "--out", str(out), "--workers", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"clip {name}/cam_{CAMS[0]}: {scene / 'transformed'}: " in stderr and "has nan" in stderr, stderr
    assert not out.exists()
