"""Human video importers on what real files and hostile inputs hold: EPIC stops rounded past the video,
SSv2's official label file names, Hugging Face cache symlinks, paths that escape the folder, symlink
loops, an Ego4D pass of the wrong JSON type, and the import report summarising skipped clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _media import make_frames, write_video
from conftest import run_cli
from hralign.errors import HRAlignError
from hralign.pairs.importers import ego4d, epic_kitchens, folder, ssv2
from hralign.pairs.importers.pipeline import ImportReport, report_path, summarise
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import validate
from test_import_human import _epic_csv, _epic_row


def _one_line_exit_2(args: list[str], out: Path) -> str:
    code, _, err = run_cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    # (a decode failure keeps .OUT.partial/ for --resume: the pipeline's rule, not checked here)
    assert not out.exists() and not [p for p in out.parent.glob(f".{out.name}*") if p.name != f".{out.name}.partial"]
    return err


# -- EPIC-KITCHENS-100: a stop rounded past the video's end ----------------------------------------
@pytest.fixture(scope="module")
def epic60(tmp_path_factory) -> Path:
    """P01_01.MP4: 30 frames at 60 fps (0.5 s, last frame at 0.483 s), as EPIC's 50/60 fps videos."""
    root = tmp_path_factory.mktemp("epic60")
    write_video(root / "P01" / "videos" / "P01_01.MP4", make_frames(30), fps=60)
    return root


def _hms(s: float) -> str:
    return f"00:00:{s:06.3f}"


def _epic_rows(root: Path, stops: list[float]) -> Path:
    ann = root / "ann"
    ann.mkdir(exist_ok=True)
    rows = [_epic_row(f"P01_01_{i}", "P01_01", 0.2, 0.3, 60, "take cup") for i in range(len(stops))]
    for r, stop in zip(rows, stops):
        r["stop_timestamp"] = _hms(stop)
    _epic_csv(ann / "EPIC_100_train.csv", rows)
    return ann


def test_epic_clamps_a_stop_13ms_past_the_video(epic60, tmp_path):
    ann = _epic_rows(tmp_path, [0.513, 0.3])  # 13 ms after the video's end (0.5 s), as a real validation row
    p = epic_kitchens.plan(epic60, epic_kitchens.EpicKitchensConfig(annotations=str(ann)))
    assert [c.frames.end_s for c in p.clips] == [pytest.approx(0.5), 0.3]
    assert p.notes == ["clamped 1 segment ends that overran their video by less than 2 frame intervals "
                       "(annotation rounding; largest: P01_01_0 by 13 ms)"]
    out = tmp_path / "epic.h5"
    code, stdout, stderr = run_cli("pairs", "import", "epic-kitchens", str(epic60), "--annotations", str(ann),
                                   "--out", str(out), "--image-size", "0", "--workers", "1")
    assert code == 0, stderr
    assert "clamped 1 segment ends" in stdout and validate(out) == []
    assert PairsFile(out).clip_lengths("human").tolist() == [18, 6]  # frames 12..29: the last frame is kept
    assert json.loads(report_path(out).read_text())["notes"] == p.notes


def test_epic_larger_overrun_still_refused_or_skipped(epic60, tmp_path):
    ann = _epic_rows(tmp_path, [0.55, 0.55, 0.55, 0.55, 0.3])  # 3 frame intervals past the end: not rounding
    p = epic_kitchens.plan(epic60, epic_kitchens.EpicKitchensConfig(annotations=str(ann)))
    assert p.clips[0].frames.end_s == 0.55 and p.notes == []
    out = tmp_path / "o.h5"
    args = ["pairs", "import", "epic-kitchens", str(epic60), "--annotations", str(ann), "--out", str(out),
            "--workers", "1"]
    err = _one_line_exit_2(args, out)
    assert "P01_01.MP4" in err and "runs past the end" in err and "--skip-bad" in err
    code, stdout, stderr = run_cli(*args, "--skip-bad", "--overwrite")
    assert code == 0, stderr
    assert stderr.count("warning: skipping clip") == 3  # the fourth is only in the summary
    assert "skipped 4 clips: … segment … s runs past the end of the video" in stdout
    assert "1 clips imported, 4 skipped" in stdout and validate(out) == []


# -- Something-Something v2: official label file names ---------------------------------------------
def _ssv2_official(root: Path, labels_dir: Path) -> None:
    write_video(root / "20bn-something-something-v2" / "78687.webm", make_frames(4), fps=12)
    write_video(root / "20bn-something-something-v2" / "42326.webm", make_frames(3, seed=2), fps=12)
    labels_dir.mkdir(parents=True, exist_ok=True)
    entry = lambda i, lab, tpl: {"id": i, "label": lab, "template": tpl, "placeholders": []}  # noqa: E731
    (labels_dir / "something-something-v2-train.json").write_text(json.dumps(
        [entry("78687", "pushing pen", "Pushing [something]")]))
    (labels_dir / "something-something-v2-validation.json").write_text(json.dumps(
        [entry("42326", "putting a cup onto a table", "Putting [something] onto [something]")]))
    (labels_dir / "something-something-v2-labels.json").write_text(json.dumps(
        {"Pushing something": "0", "Putting something onto something": "1"}))


@pytest.mark.parametrize("where", ["root", "labels", "elsewhere"])
def test_ssv2_official_label_names(tmp_path, where):
    root = tmp_path / "ssv2"
    labels = {"root": root, "labels": root / "labels", "elsewhere": tmp_path / "lbl"}[where]
    _ssv2_official(root, labels)
    cfg = ssv2.SSv2Config(labels=str(labels) if where == "elsewhere" else None)
    p = ssv2.plan(root, cfg)
    assert [(c.key, c.instruction, c.split) for c in p.clips] == [("78687", "pushing pen", 0),
                                                                  ("42326", "putting a cup onto a table", 1)]
    assert ssv2.plan(root, ssv2.SSv2Config(labels=cfg.labels, splits="validation")).clips[0].key == "42326"


def test_ssv2_no_label_file_names_every_accepted_name(tmp_path):
    root = tmp_path / "ssv2"
    _ssv2_official(root, root / "labels")
    for n in ("train", "validation"):
        (root / "labels" / f"something-something-v2-{n}.json").unlink()
    out = tmp_path / "o.h5"
    err = _one_line_exit_2(["pairs", "import", "ssv2", str(root), "--out", str(out)], out)
    for name in ("train.json", "something-something-v2-train.json", "validation.json",
                 "something-something-v2-validation.json", "something-something-v2-labels.json holds only"):
        assert name in err
    with pytest.raises(HRAlignError, match="no train.json or something-something-v2-train.json"):
        ssv2.plan(root, ssv2.SSv2Config(splits="train"))


def test_ssv2_missing_videos_summarised_full_list_in_json(tmp_path):
    root = tmp_path / "ssv2"
    _ssv2_official(root, root / "labels")
    ids = [str(1000 + i) for i in range(8)]  # listed, never downloaded
    path = root / "labels" / "something-something-v2-train.json"
    path.write_text(json.dumps(json.loads(path.read_text()) + [
        {"id": i, "label": "x", "template": "X", "placeholders": []} for i in ids]))
    out = tmp_path / "o.h5"
    code, stdout, stderr = run_cli("pairs", "import", "ssv2", str(root), "--out", str(out), "--workers", "1")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert "skipped 8 clips: video … not found; the first 3:" in lines
    assert sum(line.startswith("skipped 10") for line in lines) == 3  # examples only, not all 8
    assert f"report (every skipped clip and its reason): {report_path(out)}" in lines
    report = json.loads(report_path(out).read_text())
    assert [s["key"] for s in report["skipped"]] == ids and report["clips"] == {"human": 2, "robot": 0}


@pytest.mark.parametrize("text", ["push\0pen", "push\ud800pen"])
def test_ssv2_label_hdf5_cannot_store_refused_or_skipped(tmp_path, text):
    """A label with a NUL (or a lone surrogate, which JSON allows) never reaches the writer: exit 2 naming the
    clip and its label file before anything is written, or that clip alone skipped under --skip-bad."""
    root = tmp_path / "ssv2"
    _ssv2_official(root, root / "labels")
    path = root / "labels" / "something-something-v2-train.json"
    path.write_text(json.dumps([{"id": "78687", "label": text, "template": "Pushing [something]", "placeholders": []}]))
    out = tmp_path / "out" / "o.h5"
    out.parent.mkdir()
    args = ["pairs", "import", "ssv2", str(root), "--out", str(out), "--workers", "1"]
    err = _one_line_exit_2(args, out)
    assert err.startswith("error: clip 78687: ") and str(path) in err and "--skip-bad" in err, err
    assert list(out.parent.iterdir()) == []  # refused in the plan check: not even a partial folder
    code, stdout, stderr = run_cli(*args, "--skip-bad")
    assert code == 0, stderr
    assert "1 clips imported, 1 skipped" in stdout and "skipped 78687: " in stdout
    assert PairsFile(out).num_clips("human") == 1 and validate(out) == []


def test_every_clip_skipped_leaves_no_partial_folder(tmp_path):
    """--skip-bad skipping every clip: exit 2, and no .OUT.partial/ (nothing a --resume could continue)."""
    root = tmp_path / "epic"
    (root / "P01" / "videos").mkdir(parents=True)
    (root / "P01" / "videos" / "P01_01.MP4").write_bytes(b"not a video" * 100)
    ann = _epic_rows(root, [0.2, 0.3])
    out = tmp_path / "out" / "o.h5"
    out.parent.mkdir()
    code, _, err = run_cli("pairs", "import", "epic-kitchens", str(root), "--annotations", str(ann), "--out", str(out),
                           "--workers", "1", "--skip-bad")
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning: skipping clip")]
    assert code == 2 and len(lines) == 1 and "no clip could be imported (2 skipped" in lines[0], err
    assert list(out.parent.iterdir()) == []


def test_summarise_groups_by_kind():
    items = [(f"k{i}", f"video /d/{i}.webm not found") for i in range(5)] + [("e", "entry has no `id`")]
    lines = summarise(items, "skipped {key}: {reason}", "skipped {n} clips: {kind}; the first {k}:")
    assert lines == ["skipped 5 clips: video … not found; the first 3:", "skipped k0: video /d/0.webm not found",
                     "skipped k1: video /d/1.webm not found", "skipped k2: video /d/2.webm not found",
                     "skipped e: entry has no `id`"]
    many = summarise([(f"k{i}", f"kind {chr(97 + i)} of {i}") for i in range(12)], "{key}: {reason}", "{n} {kind}")
    assert many[:2] == ["k0: kind a of 0", "k1: kind b of 1"] and many[10:] == ["... and 2 more, for 2 other reasons"]
    assert summarise([(k, f"instructions differ ('{k}' vs 'x')") for k in "abcd"], "{key}", "{n}: {kind}")[0] == \
        "4: instructions differ (… vs …)"
    r = ImportReport(Path("o.h5"), {"human": 1}, {"human": 3}, 0, items, notes=["clamped 2 segment ends"])
    assert r.lines()[1] == "clamped 2 segment ends" and r.lines()[-1] == "1 clips imported, 6 skipped, 0 pairs"
    assert len(json.loads(r.to_json())["skipped"]) == 6


# -- folder: Hugging Face cache symlinks, escaping paths, symlink loops -----------------------------
@pytest.fixture(scope="module")
def hf_snapshot(tmp_path_factory) -> Path:
    """models--x/snapshots/<rev>/videos/{0,1}.mp4 -> ../../../blobs/<sha>, as huggingface_hub stores them."""
    repo = tmp_path_factory.mktemp("hub") / "datasets--me--clips"
    write_video(repo / "blobs" / "aa11", make_frames(4), fps=10, codec="libx264")
    write_video(repo / "blobs" / "bb22", make_frames(5, seed=1), fps=10, codec="libx264")
    snap = repo / "snapshots" / "0123abcd"
    (snap / "videos").mkdir(parents=True)
    os.symlink("../../../blobs/aa11", snap / "videos" / "0.mp4")
    os.symlink("../../../blobs/bb22", snap / "videos" / "1.mp4")
    return snap


def test_folder_follows_hub_snapshot_symlinks(hf_snapshot, tmp_path):
    csv = tmp_path / "clips.csv"
    csv.write_text("path,instruction,embodiment,pair\nvideos/0.mp4,wave,human,a\nvideos/./x/../1.mp4,wave,robot,a\n")
    p = folder.plan(hf_snapshot, folder.FolderConfig(csv=str(csv)))
    assert [c.frames.path for c in p.clips] == [hf_snapshot / "videos/0.mp4", hf_snapshot / "videos/1.mp4"]
    out = tmp_path / "o.h5"
    code, _, stderr = run_cli("pairs", "import", "folder", str(hf_snapshot), "--csv", str(csv), "--out", str(out),
                              "--workers", "1", "--image-size", "0")
    assert code == 0, stderr
    assert validate(out) == [] and PairsFile(out).num_pairs == 1


@pytest.mark.parametrize("path, message", [
    ("../../blobs/aa11", "is outside"), ("videos/../../../blobs/aa11", "climbs above"),
    ("/etc/hostname", "an absolute path"), ("loop_a", "symlink loop"), ("up/" * 41 + "videos/0.mp4", "symlink loop"),
    ("videos", "is not a file")])
def test_folder_bad_paths_one_line(hf_snapshot, tmp_path, path, message):
    root = tmp_path / "tree"
    (root / "videos").mkdir(parents=True)
    os.symlink(hf_snapshot / "videos" / "0.mp4", root / "videos" / "0.mp4")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink(".", root / "up")  # a directory link to its own folder: a cycle when followed 41 times
    csv = tmp_path / "c.csv"
    csv.write_text(f"path,instruction,embodiment\n{path},x,human\n")
    out = tmp_path / "o.h5"
    err = _one_line_exit_2(["pairs", "import", "folder", str(root), "--csv", str(csv), "--out", str(out)], out)
    assert f"{csv}: row 2" in err and message in err
    assert folder.inside_path("up/../videos/0.mp4", "p", root) == Path("videos/0.mp4")


# -- Ego4D: a pass of the wrong JSON type ---------------------------------------------------------
@pytest.mark.parametrize("entry, key", [({"narration_pass_1": [{"narration_text": "#C C x"}]}, "uid1/narration_pass_1"),
                                        ([{"narration_pass_1": {}}], "uid1 should be an object")])
def test_ego4d_pass_of_wrong_type_one_line(tmp_path, entry, key):
    root = tmp_path / "ego"
    write_video(root / "v2" / "full_scale" / "uid1.mp4", make_frames(3))
    (root / "v2" / "annotations").mkdir(parents=True)
    (root / "v2" / "annotations" / "narration.json").write_text(json.dumps({"uid1": entry}))
    with pytest.raises(HRAlignError, match="found a JSON array"):
        ego4d.plan(root, ego4d.Ego4DConfig())
    out = tmp_path / "o.h5"
    err = _one_line_exit_2(["pairs", "import", "ego4d", str(root), "--out", str(out)], out)
    assert "narration.json" in err and key in err


def test_video_probe_duration_and_rate(epic60, tmp_path):
    from hralign.pairs.importers.annotations import video_probe

    assert video_probe(epic60 / "P01" / "videos" / "P01_01.MP4") == (pytest.approx(0.5), 60.0)
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(HRAlignError, match="x.mp4: cannot be opened as a video"):
        video_probe(tmp_path / "x.mp4")


# -- ids that would reach outside the dataset's folder, and an fps of 0 -----------------------------
def test_annotation_ids_that_escape_the_root_one_line(epic60, tmp_path):
    ann = _epic_rows(tmp_path, [0.3])
    _epic_csv(ann / "EPIC_100_train.csv", [{**_epic_row("x", "P01_01", 0.0, 0.2, 60, "take cup"),
                                            "video_id": "../../P01_01"}])
    out = tmp_path / "o.h5"
    err = _one_line_exit_2(["pairs", "import", "epic-kitchens", str(epic60), "--annotations", str(ann), "--out", str(out)], out)
    assert "EPIC_100_train.csv:2: video_id: '../../P01_01' is not a plain file name" in err
    (ann / "EPIC_100_train.csv").unlink()
    _epic_csv(ann / "EPIC_100_validation.csv", [{**_epic_row("x", "P01_01", 0, 0, 60, "take cup"), "start_timestamp": "",
                                                 "stop_timestamp": ""}])
    (ann / "EPIC_100_video_info.csv").write_text("video_id,duration,fps,resolution\nP01_01,0.5,0,64x48\n")
    err = _one_line_exit_2(["pairs", "import", "epic-kitchens", str(epic60), "--annotations", str(ann), "--out", str(out)], out)
    assert "EPIC_100_video_info.csv: fps '0' of P01_01, expected a positive number" in err

    root = tmp_path / "ssv2"
    _ssv2_official(root, root / "labels")
    (root / "labels" / "something-something-v2-train.json").write_text(json.dumps(
        [{"id": "../../../etc/hostname", "label": "x", "template": "X", "placeholders": []}]))
    with pytest.raises(HRAlignError, match=r"something-something-v2-train.json: entry 0 id: '\.\./\.\./\.\./etc/hostname'"):
        ssv2.plan(root, ssv2.SSv2Config())

    ego = tmp_path / "ego"
    (ego / "v2" / "full_scale").mkdir(parents=True)
    (ego / "v2" / "annotations").mkdir(parents=True)
    (ego / "v2" / "annotations" / "narration.json").write_text(json.dumps(
        {"../x": {"narration_pass_1": {"narrations": [{"timestamp_sec": 0.1, "narration_text": "#C C x"}]}}}))
    err = _one_line_exit_2(["pairs", "import", "ego4d", str(ego), "--out", str(out)], out)
    assert "narration.json: video_uid: '../x' is not a plain file name" in err
