"""`hralign pairs build`: videos / gifs / image folders from a CSV manifest; failures leave nothing behind."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.pairs import PairsFile
from hralign.pairs.build import BuildConfig, build_from_manifest, load_clip
from hralign.pairs.validate import validate


def _frames(n, h=36, w=44, seed=0):
    # smooth content so lossy codecs keep it recognisable
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(1, 1, 3))
    ramp = np.linspace(0, 200, w)[None, :, None]
    return np.stack([np.clip(base + ramp + 3 * t, 0, 255).astype(np.uint8).repeat(h, 0) for t in range(n)])


@pytest.fixture()
def media(tmp_path):
    iio.imwrite(tmp_path / "h0.mp4", _frames(30), fps=30, codec="libx264")
    iio.imwrite(tmp_path / "r0.gif", _frames(10, seed=1), duration=100, loop=0)
    (tmp_path / "h1").mkdir()
    for i, f in enumerate(_frames(6, seed=2)):
        iio.imwrite(tmp_path / "h1" / f"{i:04d}.png", f)
    return tmp_path


def test_build_from_videos_gif_and_folders(media):
    (media / "pairs.csv").write_text("human,robot,task,split\n"
                                     "h0.mp4,r0.gif,open the drawer,train\n"
                                     "h1,r0.gif,open the drawer,val\n")
    out = build_from_manifest(media / "pairs.csv", media / "data.h5", image_size=24, progress=False)
    assert validate(out) == []
    pf = PairsFile(out)
    assert pf.tasks == ["open the drawer"]
    assert pf.num_clips("human") == 2 and pf.num_clips("robot") == 1  # r0.gif stored once, used twice
    assert pf.pairs.tolist() == [[0, 0], [1, 0]] and pf.split.tolist() == [0, 1]
    assert pf.clip_lengths("human").tolist() == [30, 6] and pf.clip_lengths("robot").tolist() == [10]
    assert pf.frame_shape("human") == (24, 24, 3)
    png = pf.read_clip("human", 1)  # lossless source: the centre crop survives resizing
    assert abs(int(png[0, 12, 12, 0]) - int(_frames(6, seed=2)[0, 18, 22, 0])) < 12


def test_fps_subsampling_and_max_frames(media):
    clip = load_clip(media / "h0.mp4", BuildConfig(fps=10))  # 30 fps source -> every 3rd frame
    assert clip.shape == (10, 36, 44, 3)
    assert load_clip(media / "h1", BuildConfig(fps=15, folder_fps=30, max_frames=2)).shape[0] == 2
    assert load_clip(media / "r0.gif", BuildConfig(fps=5)).shape[0] == 5  # gif at 10 fps


def test_missing_video_is_named_and_nothing_is_left(media):
    (media / "pairs.csv").write_text("human,robot,task\nh0.mp4,r0.gif,open\nh0.mp4,missing.mp4,open\n")
    out = media / "out" / "data.h5"
    code, stdout, err = run_cli("pairs", "build", "--manifest", str(media / "pairs.csv"), "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "missing.mp4" in lines[0] and "line 3" in lines[0]
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_unreadable_video_is_named_and_writer_aborts(media):
    (media / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (media / "pairs.csv").write_text("human,robot,task\nh0.mp4,r0.gif,open\nh1,broken.mp4,open\n")
    before = sorted(p.name for p in media.iterdir())
    code, stdout, err = run_cli("pairs", "build", "--manifest", str(media / "pairs.csv"), "--out", str(media / "d.h5"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.mp4" in err and "cannot decode" in err
    assert sorted(p.name for p in media.iterdir()) == before  # no d.h5, no temporary file


@pytest.mark.parametrize("text,phrase", [("human,robot\na.mp4,b.mp4\n", "missing ['task']"),
                                          ("human,robot,task\n", "no rows"),
                                          ("human,robot,task\nh0.mp4,,x\n", "`robot` is empty"),
                                          ("human,robot,task,split\nh0.mp4,r0.gif,x,test\n", "split 'test'"),
                                          ("human,robot,task\nh0.mp4,r0.gif,a\nh0.mp4,r0.gif,b\n", "has one task")])
def test_bad_manifests(media, text, phrase):
    (media / "m.csv").write_text(text)
    with pytest.raises(HRAlignError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        build_from_manifest(media / "m.csv", media / "o.h5", progress=False)
    assert not (media / "o.h5").exists()


def test_sizes_must_match_without_image_size(media):
    iio.imwrite(media / "h2.gif", _frames(4, h=20, w=20), duration=100, loop=0)
    (media / "m.csv").write_text("human,robot,task\nh0.mp4,r0.gif,a\nh2.gif,r0.gif,a\n")
    with pytest.raises(HRAlignError, match="h2.gif"):
        build_from_manifest(media / "m.csv", media / "o.h5", progress=False)
    assert not (media / "o.h5").exists()
