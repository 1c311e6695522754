"""Human video sets (Ego4D, EPIC-KITCHENS-100, SSv2): fixtures in their shipped layouts, the plans
(keys, instructions, segments, splits), end-to-end imports and an empty annotation file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from _media import make_frames, mean_colors, write_video
from conftest import run_cli
from hralign.errors import HRAlignError
from hralign.pairs.importers import ego4d, epic_kitchens, ssv2
from hralign.pairs.importers.source import VideoSegment

EPIC_COLUMNS = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                "noun_class", "all_nouns", "all_noun_classes"]


# -- Ego4D -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ego4d_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ego4d")
    uid = "001e3e4e-2743-47fc-8564-d5efd11f9e90"
    write_video(root / "v2" / "full_scale" / f"{uid}.mp4", make_frames(20), fps=10)  # 2.0 s
    narr = {
        uid: {"narration_pass_1": {"narrations": [
            {"timestamp_sec": 0.3, "timestamp_frame": 9, "narration_text": "#C C picks a bag of clothes from the floor",
             "annotation_uid": "a"},
            {"timestamp_sec": 1.0, "timestamp_frame": 30, "narration_text": "#O man X opens the door", "annotation_uid": "b"},
            {"timestamp_sec": 1.2, "timestamp_frame": 36, "narration_text": "#C C #unsure", "annotation_uid": "c"},
            {"timestamp_sec": 1.9, "timestamp_frame": 57, "narration_text": "#C C drops the bag.", "annotation_uid": "d"},
        ], "summaries": [{"summary_text": "#Summary C tidies the room"}]},
              "narration_pass_2": {"narrations": [], "summaries": []}},
        "missing-video-uid": {"narration_pass_1": {"narrations": [
            {"timestamp_sec": 1.0, "timestamp_frame": 30, "narration_text": "#C C waves"}]}},
    }
    (root / "v2" / "annotations").mkdir(parents=True)
    (root / "v2" / "annotations" / "narration.json").write_text(json.dumps(narr))
    return root


def test_ego4d_plan(ego4d_root):
    p = ego4d.plan(ego4d_root, ego4d.Ego4DConfig(window_s=1.0))
    uid = "001e3e4e-2743-47fc-8564-d5efd11f9e90"
    assert [c.key for c in p.clips] == [f"{uid}/1/0", f"{uid}/1/3"]
    assert [c.instruction for c in p.clips] == ["picks a bag of clothes from the floor", "drops the bag"]
    assert {c.domain for c in p.clips} == {"human"} and {c.split for c in p.clips} == {None}
    assert p.clips[0].frames == VideoSegment(ego4d_root / "v2/full_scale" / f"{uid}.mp4", 0.0, 0.8)  # clipped at 0
    seg = p.clips[1].frames
    assert seg.start_s == pytest.approx(1.4) and seg.end_s == pytest.approx(2.0)  # clipped at the video's end
    skipped = dict(p.skipped)
    assert "camera wearer" in skipped[f"{uid}/1/1"] and "#unsure" in skipped[f"{uid}/1/2"]
    assert "not found" in skipped["missing-video-uid"]
    others = ego4d.Ego4DConfig(others=True)
    assert "man X opens the door" in [c.instruction for c in ego4d.plan(ego4d_root, others).clips]


def test_ego4d_end_to_end(ego4d_root, tmp_path):
    out = tmp_path / "ego.h5"
    code, stdout, stderr = run_cli("pairs", "import", "ego4d", str(ego4d_root), "--out", str(out), "--window-s", "1.0",
                                   "--image-size", "0", "--workers", "1")
    assert code == 0, stderr
    code, _, stderr = run_cli("pairs", "validate", str(out))
    assert code == 0, stderr
    from hralign.pairs.reader import PairsFile

    pf = PairsFile(out)
    assert pf.tasks == ["picks a bag of clothes from the floor", "drops the bag"]
    assert pf.clip_lengths("human").tolist() == [8, 6]  # frames at 0.0..0.7 s and 1.4..1.9 s
    np.testing.assert_allclose(mean_colors(pf.read_clip("human", 1)), mean_colors(make_frames(20)[14:20]), atol=4)


def test_ego4d_empty_annotations(tmp_path):
    root = tmp_path / "ego"
    write_video(root / "v2" / "full_scale" / "x.mp4", make_frames(3))
    (root / "v2" / "annotations").mkdir(parents=True)
    ann = root / "v2" / "annotations" / "narration.json"
    for content in ("", "{}", json.dumps({"x": {"narration_pass_1": {"narrations": []}}})):
        ann.write_text(content)
        with pytest.raises(HRAlignError, match="narration.json"):
            ego4d.plan(root, ego4d.Ego4DConfig())
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "import", "ego4d", str(root), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "narration.json" in stderr
    assert not out.exists()


# -- EPIC-KITCHENS-100 -----------------------------------------------------------------------------
def _epic_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EPIC_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in EPIC_COLUMNS})


def _epic_row(nid, vid, start, stop, fps, text):
    hms = lambda s: f"00:00:{s:06.3f}"  # noqa: E731 - EPIC's "HH:MM:SS.fff"
    return {"narration_id": nid, "participant_id": vid.split("_")[0], "video_id": vid, "narration_timestamp": hms(start),
            "start_timestamp": hms(start), "stop_timestamp": hms(stop), "start_frame": int(round(start * fps)),
            "stop_frame": int(round(stop * fps)), "narration": text, "verb": text.split()[0], "noun": text.split()[-1]}


@pytest.fixture(scope="module")
def epic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("epic")
    write_video(root / "P01" / "videos" / "P01_01.MP4", make_frames(20), fps=10)
    write_video(root / "P02" / "videos" / "P02_03.MP4", make_frames(10, seed=3), fps=10)
    ann = root / "epic-kitchens-100-annotations"
    ann.mkdir()
    _epic_csv(ann / "EPIC_100_train.csv", [_epic_row("P01_01_0", "P01_01", 0.0, 0.5, 10, "open door"),
                                           _epic_row("P01_01_1", "P01_01", 1.0, 1.8, 10, "take cup"),
                                           _epic_row("P03_01_0", "P03_01", 0.0, 1.0, 10, "wash pan")])
    _epic_csv(ann / "EPIC_100_validation.csv", [_epic_row("P02_03_0", "P02_03", 0.2, 0.6, 10, "close drawer")])
    return root


def test_epic_plan(epic_root):
    p = epic_kitchens.plan(epic_root, epic_kitchens.EpicKitchensConfig())
    assert [(c.key, c.instruction, c.split) for c in p.clips] == [
        ("P01_01_0", "open door", 0), ("P01_01_1", "take cup", 0), ("P02_03_0", "close drawer", 1)]
    assert p.clips[1].frames == VideoSegment(epic_root / "P01/videos/P01_01.MP4", 1.0, 1.8)
    assert dict(p.skipped)["P03_01"].startswith("1 segments: video")
    p = epic_kitchens.plan(epic_root, epic_kitchens.EpicKitchensConfig(splits="validation"))
    assert [c.key for c in p.clips] == ["P02_03_0"]
    with pytest.raises(HRAlignError, match="splits"):
        epic_kitchens.EpicKitchensConfig(splits="test")


def test_epic_end_to_end_keeps_split(epic_root, tmp_path):
    out = tmp_path / "epic.h5"
    code, stdout, stderr = run_cli("pairs", "import", "epic-kitchens", str(epic_root), "--out", str(out),
                                   "--image-size", "0", "--workers", "1")
    assert code == 0, stderr
    assert run_cli("pairs", "validate", str(out))[0] == 0
    from hralign.pairs.reader import PairsFile

    pf = PairsFile(out)
    assert pf.clip_split("human").tolist() == [0, 0, 1]
    assert pf.clip_lengths("human").tolist() == [5, 8, 4]
    np.testing.assert_allclose(mean_colors(pf.read_clip("human", 2)), mean_colors(make_frames(10, seed=3)[2:6]), atol=4)


def test_epic_empty_annotation_file(tmp_path):
    root = tmp_path / "epic"
    write_video(root / "P01" / "videos" / "P01_01.MP4", make_frames(3))
    _epic_csv(root / "EPIC_100_train.csv", [])  # header only
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "import", "epic-kitchens", str(root), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "EPIC_100_train.csv" in stderr and "no rows" in stderr
    (root / "EPIC_100_train.csv").write_text("")
    with pytest.raises(HRAlignError, match="EPIC_100_train.csv: annotation file is empty"):
        epic_kitchens.plan(root, epic_kitchens.EpicKitchensConfig())
    assert not out.exists()


# -- Something-Something v2 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ssv2")
    write_video(root / "78687.webm", make_frames(6), fps=12)
    write_video(root / "42326.webm", make_frames(5, seed=4), fps=12)
    (root / "labels").mkdir()
    (root / "labels" / "train.json").write_text(json.dumps([
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "11", "label": "pushing pen", "template": "Pushing [something]", "placeholders": ["pen"]}]))
    (root / "labels" / "validation.json").write_text(json.dumps([
        {"id": "42326", "label": "putting a cup onto a table", "template": "Putting [something] onto [something]",
         "placeholders": ["a cup", "a table"]}]))
    (root / "labels" / "test.json").write_text(json.dumps([{"id": "5"}]))
    return root


def test_ssv2_plan(ssv2_root):
    p = ssv2.plan(ssv2_root, ssv2.SSv2Config())
    assert [(c.key, c.instruction, c.split) for c in p.clips] == [
        ("78687", "holding potato next to vicks vaporub bottle", 0), ("42326", "putting a cup onto a table", 1)]
    assert "not found" in dict(p.skipped)["11"]
    p = ssv2.plan(ssv2_root, ssv2.SSv2Config(instruction="template"))
    assert [c.instruction for c in p.clips] == ["Holding something next to something", "Putting something onto something"]


def test_ssv2_end_to_end(ssv2_root, tmp_path):
    out = tmp_path / "ssv2.h5"
    code, stdout, stderr = run_cli("pairs", "import", "ssv2", str(ssv2_root), "--out", str(out), "--image-size", "0",
                                   "--workers", "1")
    assert code == 0, stderr
    assert "1 skipped" in stdout
    assert run_cli("pairs", "validate", str(out))[0] == 0
    from hralign.pairs.reader import PairsFile

    pf = PairsFile(out)
    assert pf.clip_split("human").tolist() == [0, 1]
    np.testing.assert_allclose(mean_colors(pf.read_clip("human", 0)), mean_colors(make_frames(6)), atol=4)
    np.testing.assert_allclose(mean_colors(pf.read_clip("human", 1)), mean_colors(make_frames(5, seed=4)), atol=4)


def test_ssv2_empty_annotation_file(ssv2_root, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "train.json").write_text("[]")
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "import", "ssv2", str(ssv2_root), "--labels", str(labels), "--out", str(out))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "train.json: annotation file holds no videos" in stderr
    assert not out.exists()


def test_helpers_and_config_checks(tmp_path):
    from hralign.pairs.importers.annotations import parse_hms, read_json

    assert ego4d.clean_narration("#C C picks a bag of clothes from the floor.") == "picks a bag of clothes from the floor"
    assert ego4d.clean_narration("#O man X opens  the door") == "man X opens the door"
    assert parse_hms("00:01:02.500") == pytest.approx(62.5) and parse_hms("3.25") == 3.25
    with pytest.raises(HRAlignError, match="HH:MM:SS"):
        parse_hms("1:xx")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(HRAlignError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json", "a dict")
    with pytest.raises(HRAlignError, match="narration_pass"):
        ego4d.Ego4DConfig(narration_pass=3)
    with pytest.raises(HRAlignError, match="window_s"):
        ego4d.Ego4DConfig(window_s=0)
    with pytest.raises(HRAlignError, match="instruction"):
        ssv2.SSv2Config(instruction="placeholders")
