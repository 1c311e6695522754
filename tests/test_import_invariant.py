"""The import invariant, across every importer: whatever the input, `hralign pairs import` either
exits 0 with a file `hralign pairs validate` accepts, or exits 2 with one line on stderr naming the
offending file and nothing left at --out (no file, no writer temporary file; the ``.OUT.partial/``
folder only when the message offers --resume, which reuses it).

Each importer starts from a small valid fixture in its shipped layout; each case applies one seeded
mutation (truncated, flipped, emptied or deleted files, JSON of the wrong shape, NaN values, ragged
rows, symlink loops, paths escaping the root) and runs the CLI in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _media import make_frames, write_video
from conftest import run_cli
from import_fixtures import write_lerobot_v3, write_lerobot_v21, write_robomimic

from hralign.pairs.importers import IMPORTERS

RH_T0 = 1_631_500_000_000
RH_SCENE = "task_0001_user_0001_scene_0001_cfg_0001"
RH_CAM = "036422060215"
EPIC_COLUMNS = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "noun"]
V3_DATA = "data/chunk-000/file-000.parquet"
V3_VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"
V3_EPISODES = "meta/episodes/chunk-000/file-000.parquet"
V21_DATA = "data/chunk-000/episode_000000.parquet"
V21_VIDEO = "videos/chunk-000/observation.images.top/episode_000000.mp4"


# -- the valid fixtures, one per source layout (built once, copied per case) -----------------------
def _folder(root: Path) -> None:
    for i, emb in enumerate(("human", "robot", "human")):
        write_video(root / emb / f"{i}.mp4", make_frames(4, seed=i), fps=10)
    (root / "clips.csv").write_text("path,instruction,embodiment,pair\nhuman/0.mp4,open the drawer,human,k\n"
                                    "robot/1.mp4,open the drawer,robot,k\nhuman/2.mp4,wipe the table,human,\n")


def _epic(root: Path) -> None:
    import csv

    write_video(root / "P01" / "videos" / "P01_01.MP4", make_frames(10), fps=10)
    hms = lambda s: f"00:00:{s:06.3f}"  # noqa: E731 - EPIC's "HH:MM:SS.fff"
    rows = [("P01_01_0", 0.0, 0.4, "open door"), ("P01_01_1", 0.5, 0.9, "take cup")]
    with open(root / "EPIC_100_train.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPIC_COLUMNS)
        w.writeheader()
        for nid, a, b, text in rows:
            w.writerow({"narration_id": nid, "participant_id": "P01", "video_id": "P01_01", "narration_timestamp": hms(a),
                        "start_timestamp": hms(a), "stop_timestamp": hms(b), "start_frame": round(a * 10),
                        "stop_frame": round(b * 10), "narration": text, "verb": text.split()[0], "noun": text.split()[-1]})


def _ssv2(root: Path) -> None:
    write_video(root / "101.webm", make_frames(4), fps=12)
    write_video(root / "102.webm", make_frames(4, seed=2), fps=12)
    (root / "labels").mkdir()
    (root / "labels" / "train.json").write_text(json.dumps([
        {"id": "101", "label": "pushing pen", "template": "Pushing [something]", "placeholders": ["pen"]}]))
    (root / "labels" / "validation.json").write_text(json.dumps([
        {"id": "102", "label": "lifting cup", "template": "Lifting [something]", "placeholders": ["cup"]}]))


def _ego4d(root: Path) -> None:
    uid = "0a1b2c"
    write_video(root / "v2" / "full_scale" / f"{uid}.mp4", make_frames(10), fps=10)
    (root / "v2" / "annotations").mkdir(parents=True)
    (root / "v2" / "annotations" / "narration.json").write_text(json.dumps({uid: {"narration_pass_1": {"narrations": [
        {"timestamp_sec": 0.3, "narration_text": "#C C picks a cup"},
        {"timestamp_sec": 0.7, "narration_text": "#C C drops the cup"}]}}}))


def _rh20t(root: Path) -> None:
    for name, n, robot in ((RH_SCENE, 4, True), (RH_SCENE + "_human", 3, False)):
        cam = root / name / f"cam_{RH_CAM}"
        write_video(cam / "color.mp4", make_frames(n, seed=int(robot)))
        np.save(cam / "timestamps.npy", {"color": [RH_T0 + 100 * k for k in range(n)]})
        if robot:
            (root / name / "transformed").mkdir()
            np.save(root / name / "transformed" / "tcp.npy", {RH_CAM: [
                {"timestamp": RH_T0 + 100 * k, "tcp": np.arange(7, dtype=np.float64) + k} for k in range(n)]})
            np.save(root / name / "transformed" / "gripper.npy", {RH_CAM: {
                RH_T0 + 100 * k: {"gripper_command": [80.0, 0, 0], "gripper_info": [40.0, 0, 0]} for k in range(n)}})
            (root / name / "metadata.json").write_text(json.dumps({"rating": 9}))


def _robomimic(root: Path) -> None:
    write_robomimic(root / "lift.hdf5", [4, 3, 3], h=16, w=16)


# source -> (importer, builder, ROOT relative to the fixture folder, extra CLI arguments)
SOURCES: dict[str, tuple[str, Callable[[Path], None], str, list[str]]] = {
    "folder": ("folder", _folder, ".", ["--csv", "{root}/clips.csv"]),
    "lerobot-v3": ("lerobot", lambda r: write_lerobot_v3(r, [3, 4, 3], per_file=2, h=16, w=24), ".", []),
    "lerobot-v21": ("lerobot", lambda r: write_lerobot_v21(r, [3, 4], h=16, w=24), ".", []),
    "robomimic": ("robomimic", _robomimic, "lift.hdf5", ["--state-keys", "robot0_eef_pos,robot0_gripper_qpos"]),
    "epic-kitchens": ("epic-kitchens", _epic, ".", []),
    "ssv2": ("ssv2", _ssv2, ".", []),
    "ego4d": ("ego4d", _ego4d, ".", ["--window-s", "0.4"]),
    "rh20t": ("rh20t", _rh20t, ".", []),
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    """Every source's valid fixture, built on first use."""
    built: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, source: str) -> Path:
            d = tmp_path_factory.mktemp(source)
            SOURCES[source][1](d)
            built[source] = d
            return d

    return Lazy()


# -- mutations: each edits the copied fixture and returns the names an error line may cite ---------
def _rng(case_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def truncate(rel: str, keep: float = 0.5):
    def m(root: Path, rng) -> list[str]:
        p = root / rel
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])
        return [p.name]
    return m


def flip(rel: str, n: int = 64):
    """Overwrite ``n`` random bytes in the second half (keeps headers, hits payload)."""
    def m(root: Path, rng) -> list[str]:
        p = root / rel
        data = bytearray(p.read_bytes())
        for i in rng.integers(len(data) // 2, len(data), n):
            data[i] = int(rng.integers(0, 256))
        p.write_bytes(bytes(data))
        return [p.name]
    return m


def empty(rel: str):
    def m(root: Path, rng) -> list[str]:
        (root / rel).write_bytes(b"")
        return [Path(rel).name]
    return m


def delete(rel: str, cite: str | None = None):
    def m(root: Path, rng) -> list[str]:
        (root / rel).unlink()
        return [cite or Path(rel).name]
    return m


def garbage(rel: str):
    def m(root: Path, rng) -> list[str]:
        (root / rel).write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
        return [Path(rel).name]
    return m


def edit_json(rel: str, fn: Callable[[object], object], jsonl: bool = False):
    def m(root: Path, rng) -> list[str]:
        p = root / rel
        if jsonl:
            lines = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
            p.write_text("\n".join(json.dumps(x) for x in fn(lines)) + "\n")
        else:
            p.write_text(json.dumps(fn(json.loads(p.read_text()))))
        return [p.name]
    return m


def set_key(d: dict, path: str, value) -> dict:
    *head, last = path.split("/")
    t = d
    for k in head:
        t = t[k]
    if value is KeyError:
        del t[last]
    else:
        t[last] = value
    return d


def write_text(rel: str, text: str, cite: str | None = None):
    def m(root: Path, rng) -> list[str]:
        (root / rel).write_text(text)
        return [cite or Path(rel).name]
    return m


def csv_row(row: str, cite: str = "clips.csv"):
    def m(root: Path, rng) -> list[str]:
        p = root / "clips.csv"
        p.write_text(p.read_text() + row + "\n")
        return [cite]
    return m


def symlink(rel: str, target: str, cite: str):
    """Make ``rel`` a symlink to ``target`` (relative to the link's folder), replacing what is there."""
    def m(root: Path, rng) -> list[str]:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
        return [cite]
    return m


def parquet_column(rel: str, column: str, fn: Callable[[list], list]):
    """Rewrite one list column of a parquet file through ``fn`` (list of rows -> list of rows)."""
    def m(root: Path, rng) -> list[str]:
        p = root / rel
        t = pq.read_table(p)
        rows = fn(t.column(column).to_pylist())
        i = t.column_names.index(column)
        t = t.set_column(i, column, pa.array(rows, type=pa.list_(pa.float32())))
        pq.write_table(t, p)
        return [p.name]
    return m


def nan_row(rows: list) -> list:
    rows[1] = [float("nan")] * len(rows[1])
    return rows


def ragged(rows: list) -> list:
    """Row 0 one value short, row 1 one value long: the total still divides by the row count."""
    rows[1] = rows[1] + rows[0][-1:]
    rows[0] = rows[0][:-1]
    return rows


def h5_edit(fn: Callable[[h5py.File], None], cite: str = "lift.hdf5"):
    def m(root: Path, rng) -> list[str]:
        with h5py.File(root / "lift.hdf5", "r+") as f:
            fn(f)
        return [cite]
    return m


def _replace(f: h5py.File, key: str, value) -> None:
    del f[key]
    f[key] = value


def npy_save(rel: str, obj):
    def m(root: Path, rng) -> list[str]:
        np.save(root / rel, obj, allow_pickle=True)
        return [Path(rel).name]
    return m


def npy_huge_header(rel: str):
    """A .npy whose header declares a float64 array of 2**40 elements (8 TiB) over a few bytes of data."""
    def m(root: Path, rng) -> list[str]:
        from numpy.lib import format as npy_format

        with open(root / rel, "wb") as f:
            npy_format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2**20, 2**20)})
            f.write(b"\0" * 64)
        return [Path(rel).name]
    return m


@dataclass
class Case:
    source: str
    name: str
    mutate: Callable[[Path, np.random.Generator], list[str]]
    args: list[str] = field(default_factory=list)
    refuse: bool = False  # exit 0 is wrong here (the input cannot give a correct file): expect exit 2


RH = f"{RH_SCENE}/cam_{RH_CAM}"
RHH = f"{RH_SCENE}_human/cam_{RH_CAM}"

CASES: list[Case] = [
    # folder: a CSV of videos
    Case("folder", "csv-empty", empty("clips.csv")),
    Case("folder", "csv-truncated-mid-row", truncate("clips.csv", 0.8)),
    Case("folder", "csv-garbage", garbage("clips.csv")),
    Case("folder", "csv-no-embodiment-column", write_text("clips.csv", "path,instruction\nhuman/0.mp4,x\n")),
    Case("folder", "csv-path-escapes-root", csv_row("../../etc/hostname,x,human")),
    Case("folder", "csv-absolute-path", csv_row("/etc/hostname,x,human")),
    Case("folder", "csv-bad-start", write_text("clips.csv", "path,instruction,embodiment,start\nhuman/0.mp4,x,human,soon\n")),
    Case("folder", "csv-bad-split", write_text("clips.csv", "path,instruction,embodiment,split\nhuman/0.mp4,x,human,test\n")),
    Case("folder", "symlink-loop", symlink("human/0.mp4", "0.mp4", "0.mp4")),
    Case("folder", "symlink-loop-pair", lambda r, g: symlink("human/a.mp4", "b.mp4", "a.mp4")(r, g)
         + symlink("human/b.mp4", "a.mp4", "b.mp4")(r, g) + csv_row("human/a.mp4,x,human")(r, g)),
    Case("folder", "csv-nul-bytes", write_text("clips.csv", "path,instruction,embodiment\nhuman/0.mp4,x\0y,human\n")),
    Case("folder", "csv-empty-instruction", write_text("clips.csv", "path,instruction,embodiment\nhuman/0.mp4,,human\n")),
    Case("folder", "symlink-out-of-root", lambda r, g: [(r.parent / "blobs").mkdir(),
                                                        shutil.copy(r / "human/0.mp4", r.parent / "blobs/abc"),
                                                        symlink("human/0.mp4", "../../blobs/abc", "clips.csv")(r, g)][-1]),
    Case("folder", "video-truncated", truncate("human/0.mp4")),
    Case("folder", "video-flipped", flip("human/0.mp4")),
    Case("folder", "video-empty", empty("robot/1.mp4")),
    Case("folder", "video-garbage", garbage("robot/1.mp4")),
    Case("folder", "video-deleted", delete("human/2.mp4", cite="clips.csv")),
    Case("folder", "video-is-a-folder", lambda r, g: [(r / "human/2.mp4").unlink(), (r / "human/2.mp4").mkdir(),
                                                      "clips.csv"][-1:]),
    # lerobot v3.0
    Case("lerobot-v3", "info-empty", empty("meta/info.json")),
    Case("lerobot-v3", "info-truncated", truncate("meta/info.json")),
    Case("lerobot-v3", "info-is-a-list", edit_json("meta/info.json", lambda d: [d])),
    Case("lerobot-v3", "features-is-a-list", edit_json("meta/info.json", lambda d: set_key(d, "features", list(d["features"])))),
    Case("lerobot-v3", "data-path-unknown-placeholder",
         edit_json("meta/info.json", lambda d: set_key(d, "data_path", "data/{chunk_id}/{file_index}.parquet"))),
    Case("lerobot-v3", "no-fps", edit_json("meta/info.json", lambda d: set_key(d, "fps", KeyError))),
    Case("lerobot-v3", "wrong-version", edit_json("meta/info.json", lambda d: set_key(d, "codebase_version", 3))),
    Case("lerobot-v3", "episodes-truncated", truncate(V3_EPISODES)),
    Case("lerobot-v3", "episodes-deleted", delete(V3_EPISODES, cite="meta/episodes")),
    Case("lerobot-v3", "data-truncated", truncate(V3_DATA)),
    Case("lerobot-v3", "data-flipped", flip(V3_DATA, 16)),
    Case("lerobot-v3", "data-deleted", delete(V3_DATA)),
    Case("lerobot-v3", "action-nan", parquet_column(V3_DATA, "action", nan_row), refuse=True),
    Case("lerobot-v3", "action-ragged", parquet_column(V3_DATA, "action", ragged), refuse=True),
    Case("lerobot-v3", "episode-past-video-end", lambda r, g: [pq.write_table(pq.read_table(r / V3_EPISODES).set_column(
        pq.read_table(r / V3_EPISODES).column_names.index("videos/observation.images.top/to_timestamp"),
        "videos/observation.images.top/to_timestamp", pa.array([0.3, 9.0, 0.3])), r / V3_EPISODES), "file-000.mp4"][-1:]),
    Case("lerobot-v3", "episode-rows-missing", lambda r, g: [pq.write_table(pq.read_table(r / V3_EPISODES).set_column(
        pq.read_table(r / V3_EPISODES).column_names.index("dataset_from_index"),
        "dataset_from_index", pa.array([0, 500, 7], pa.int64())), r / V3_EPISODES), "file-000.parquet"][-1:]),
    Case("lerobot-v3", "fps-text", edit_json("meta/info.json", lambda d: set_key(d, "fps", "ten"))),
    Case("lerobot-v3", "video-truncated", truncate(V3_VIDEO)),
    Case("lerobot-v3", "video-flipped", flip(V3_VIDEO)),
    # lerobot v2.1
    Case("lerobot-v21", "episodes-jsonl-garbage", garbage("meta/episodes.jsonl")),
    Case("lerobot-v21", "episodes-jsonl-lists", edit_json("meta/episodes.jsonl", lambda rows: [[r] for r in rows], jsonl=True)),
    Case("lerobot-v21", "episodes-jsonl-no-index",
         edit_json("meta/episodes.jsonl", lambda rows: [{k: v for k, v in r.items() if k != "episode_index"} for r in rows],
                   jsonl=True)),
    Case("lerobot-v21", "tasks-jsonl-empty", empty("meta/tasks.jsonl")),
    Case("lerobot-v21", "chunks-size-text", edit_json("meta/info.json", lambda d: set_key(d, "chunks_size", "many"))),
    Case("lerobot-v21", "state-nan", parquet_column(V21_DATA, "observation.state", nan_row), refuse=True),
    Case("lerobot-v21", "data-garbage", garbage(V21_DATA)),
    Case("lerobot-v21", "video-empty", empty(V21_VIDEO)),
    # robomimic
    Case("robomimic", "file-truncated", truncate("lift.hdf5")),
    Case("robomimic", "file-flipped", flip("lift.hdf5", 256)),
    Case("robomimic", "file-empty", empty("lift.hdf5")),
    Case("robomimic", "env-args-is-a-list", h5_edit(lambda f: f["data"].attrs.__setitem__("env_args", "[1, 2]"))),
    Case("robomimic", "env-args-not-json", h5_edit(lambda f: f["data"].attrs.__setitem__("env_args", "{nope"))),
    Case("robomimic", "actions-nan", h5_edit(lambda f: f["data/demo_1/actions"].__setitem__((1, 0), np.nan)),
         refuse=True),
    Case("robomimic", "actions-inf", h5_edit(lambda f: f["data/demo_0/actions"].__setitem__((0, 1), np.inf)),
         refuse=True),
    Case("robomimic", "actions-3d", h5_edit(lambda f: _replace(f, "data/demo_0/actions", np.zeros((4, 2, 2))))),
    Case("robomimic", "images-float", h5_edit(lambda f: _replace(f, "data/demo_2/obs/agentview_image",
                                                                  np.zeros((3, 16, 16, 3), np.float32)))),
    Case("robomimic", "images-no-frames", h5_edit(lambda f: _replace(f, "data/demo_2/obs/agentview_image",
                                                                      np.zeros((0, 16, 16, 3), np.uint8)))),
    Case("robomimic", "demo-is-a-dataset", h5_edit(lambda f: _replace(f, "data/demo_1", np.zeros(3)))),
    Case("robomimic", "state-rows-short", h5_edit(lambda f: _replace(f, "data/demo_0/obs/robot0_eef_pos", np.zeros((2, 3))))),
    Case("robomimic", "mask-is-numbers", h5_edit(lambda f: _replace(f, "mask/train", np.arange(3)))),
    # EPIC-KITCHENS-100
    Case("epic-kitchens", "csv-empty", empty("EPIC_100_train.csv")),
    Case("epic-kitchens", "csv-truncated", truncate("EPIC_100_train.csv", 0.7)),
    Case("epic-kitchens", "csv-garbage", garbage("EPIC_100_train.csv")),
    Case("epic-kitchens", "stop-past-video", lambda r, g: [
        (r / "EPIC_100_train.csv").write_text((r / "EPIC_100_train.csv").read_text().replace("00:00:00.900", "00:00:05.000")),
        "P01_01.MP4"][-1:]),
    Case("epic-kitchens", "bad-timestamp", lambda r, g: [
        (r / "EPIC_100_train.csv").write_text((r / "EPIC_100_train.csv").read_text().replace("00:00:00.900", "0x:zz")),
        "EPIC_100_train.csv"][-1:]),
    Case("epic-kitchens", "stop-past-video-by-13ms", lambda r, g: [
        (r / "EPIC_100_train.csv").write_text((r / "EPIC_100_train.csv").read_text().replace("00:00:00.900", "00:00:01.013")),
        "P01_01.MP4"][-1:]),
    Case("epic-kitchens", "video-truncated", truncate("P01/videos/P01_01.MP4")),
    Case("epic-kitchens", "video-garbage", garbage("P01/videos/P01_01.MP4")),
    Case("epic-kitchens", "video-info-garbage", write_text("EPIC_100_video_info.csv", "video_id,fps\nP01_01,fast\n")),
    # Something-Something v2
    Case("ssv2", "labels-empty", empty("labels/train.json")),
    Case("ssv2", "labels-truncated", truncate("labels/train.json")),
    Case("ssv2", "labels-a-dict", edit_json("labels/train.json", lambda d: {"videos": d})),
    Case("ssv2", "labels-wrong-types", edit_json("labels/train.json", lambda d: [{"id": [1], "label": 5}, 7, None])),
    Case("ssv2", "official-label-names", lambda r, g: [(r / "labels/train.json").rename(r / "labels/something-something-v2-train.json"),
                                                       (r / "labels/validation.json").rename(
                                                           r / "labels/something-something-v2-validation.json"), "labels"][-1:]),
    Case("ssv2", "label-with-nul", edit_json("labels/train.json", lambda d: [{**d[0], "label": "push\0pen"}]),
         refuse=True),
    Case("ssv2", "video-truncated", truncate("101.webm")),
    Case("ssv2", "video-flipped", flip("101.webm")),
    Case("ssv2", "video-deleted", delete("102.webm")),
    # Ego4D
    Case("ego4d", "narration-empty", empty("v2/annotations/narration.json")),
    Case("ego4d", "narration-truncated", truncate("v2/annotations/narration.json")),
    Case("ego4d", "narration-a-list", edit_json("v2/annotations/narration.json", lambda d: [d])),
    Case("ego4d", "pass-is-a-list", edit_json("v2/annotations/narration.json",
                                              lambda d: {k: {"narration_pass_1": [v]} for k, v in d.items()})),
    Case("ego4d", "narrations-wrong-types", edit_json("v2/annotations/narration.json", lambda d: {k: {"narration_pass_1": {
        "narrations": [{"timestamp_sec": "soon", "narration_text": 3}, None, {"timestamp_sec": float("nan"),
                                                                             "narration_text": "#C C x"}]}} for k in d})),
    Case("ego4d", "video-truncated", truncate("v2/full_scale/0a1b2c.mp4")),
    Case("ego4d", "video-garbage", garbage("v2/full_scale/0a1b2c.mp4")),
    # RH20T
    Case("rh20t", "timestamps-truncated", truncate(f"{RH}/timestamps.npy")),
    Case("rh20t", "timestamps-garbage", garbage(f"{RH}/timestamps.npy")),
    Case("rh20t", "timestamps-a-list", npy_save(f"{RHH}/timestamps.npy", np.array([1, 2, 3]))),
    Case("rh20t", "timestamps-huge-header", npy_huge_header(f"{RH}/timestamps.npy")),
    Case("rh20t", "tcp-wrong-layout", lambda r, g: npy_save(f"{RH_SCENE}/transformed/tcp.npy", {RH_CAM: [{"t": 1}]})(r, g)
         + [f"{RH_SCENE}/transformed"]),
    Case("rh20t", "tcp-flipped", flip(f"{RH_SCENE}/transformed/tcp.npy", 32)),
    Case("rh20t", "metadata-a-list", write_text(f"{RH_SCENE}/metadata.json", "[9]"), args=["--min-rating", "1"]),
    Case("rh20t", "video-truncated", truncate(f"{RHH}/color.mp4")),
    Case("rh20t", "timestamps-unsorted", npy_save(f"{RH}/timestamps.npy", {"color": [RH_T0 + 100 * k for k in (0, 2, 1, 3)]})),
    Case("rh20t", "timestamps-fewer-than-frames", lambda r, g: npy_save(f"{RH}/timestamps.npy", {"color": [RH_T0, RH_T0 + 100]})(
        r, g) + [RH]),  # the clip key is the camera folder's path
    Case("rh20t", "camera-symlink-loop", symlink(f"{RHH}", f"cam_{RH_CAM}", f"cam_{RH_CAM}")),
]


def _run(case: Case, fixtures, tmp_path: Path, skip_bad: bool = False) -> tuple[int, str, str, Path, list[str]]:
    importer, _, rel_root, extra = SOURCES[case.source]
    src = tmp_path / "src"
    shutil.copytree(fixtures[case.source], src, symlinks=True)
    cites = case.mutate(src, _rng(f"{case.source}/{case.name}"))
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "o.h5"
    args = [a.format(root=src) for a in extra] + case.args + (["--skip-bad"] if skip_bad else [])
    code, stdout, stderr = run_cli("pairs", "import", importer, str(src / rel_root), "--out", str(out),
                                   "--image-size", "16", "--workers", "1", *args)
    return code, stdout, stderr, out, cites


def _params():
    for c in CASES:
        for skip_bad in (False, True):
            yield pytest.param(c, skip_bad, id=f"{c.source}-{c.name}" + ("-skip-bad" if skip_bad else ""))


def check_invariant(code: int, stdout: str, stderr: str, out: Path, cites: list[str], refuse: bool = False,
                    skip_bad: bool = False) -> None:
    """Exit 0 and a valid file, or exit 2, one stderr line citing a file, and nothing at ``out``.

    ``refuse``: the input holds a clip no file may carry; exit 0 is right only when --skip-bad skipped it.
    """
    from hralign.pairs.validate import validate

    leftovers = sorted(p.name for p in out.parent.iterdir())
    if code == 0 and refuse and skip_bad:
        assert " 0 skipped," not in stdout, f"a bad clip was imported, not skipped: {stdout}"
    if code == 0 and (not refuse or skip_bad):
        assert validate(out) == [], f"exit 0 but the file is invalid: {validate(out)}"
        report = out.with_suffix(".import.json").name  # the import report written beside a finished file
        assert [n for n in leftovers if n != report] == [out.name], f"files beside the output: {leftovers}"
        return
    assert code == 2, f"exit {code}, expected {'2' if refuse else '0 or 2'}: {stderr.strip()}"
    lines = [x for x in stderr.strip().splitlines() if not (skip_bad and x.startswith("warning: skipping clip"))]
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {stderr}"
    assert any(c in lines[0] for c in cites), f"the error names none of {cites}: {lines[0]}"
    assert not out.exists()
    part = f".{out.name}.partial"
    assert [n for n in leftovers if n != part] == [], f"left beside the output: {leftovers}"
    if part in leftovers:  # kept only for an import --resume can continue, and then without temporary files
        assert "--resume" in lines[0], f"{part} left behind but the message does not offer --resume: {lines[0]}"
        assert not [p for p in (out.parent / part).iterdir() if p.name.endswith(".tmp")]


def test_cases_cover_every_importer():
    assert {SOURCES[c.source][0] for c in CASES} == set(IMPORTERS)
    code, stdout, _ = run_cli("pairs", "import", "--help")
    assert code == 0 and all(f"  {name} " in stdout for name in IMPORTERS)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_valid_fixture_imports(source, fixtures, tmp_path):
    """The starting point of every mutation is itself a good import (so a mutation's failure is its own)."""
    case = Case(source, "valid", lambda r, g: [])
    code, stdout, stderr, out, _ = _run(case, fixtures, tmp_path)
    assert code == 0, stderr
    check_invariant(code, stdout, stderr, out, [])


@pytest.mark.parametrize("case, skip_bad", list(_params()))
def test_invariant(case: Case, skip_bad: bool, fixtures, tmp_path):
    code, stdout, stderr, out, cites = _run(case, fixtures, tmp_path, skip_bad)
    check_invariant(code, stdout, stderr, out, cites, case.refuse, skip_bad)
