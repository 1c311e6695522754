"""Bad pairs files: every one is reported by `validate`, and every command
that reads it exits 2 with ONE line on stderr and leaves no output behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hralign.pairs import PairsFile
from hralign.pairs.synth import SynthConfig, synthesize
from hralign.pairs.validate import validate


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def _replace(h: h5py.File, key: str, data: np.ndarray) -> None:
    del h[key]
    h.create_dataset(key, data=data)


def _not_hdf5(src, p):
    p.write_text("human,robot,task\nthis is a csv, not HDF5\n")


def _other_format(src, p):
    with h5py.File(p, "w") as h:
        h.attrs["format"] = "robomimic"
        h.create_dataset("data/demo_0/obs", data=np.zeros((4, 3)))


def _truncated(src, p):
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])


def _empty(src, p):
    p.write_bytes(b"")


def _mutate(fn):
    def make(src, p):
        _copy(src, p)
        with h5py.File(p, "r+") as h:
            fn(h)
    return make


def _pair_out_of_range(h):
    pairs = h["pairs"][()]
    pairs[1, 1] = 999
    h["pairs"][...] = pairs


def _clips_past_frames(h):
    lengths = h["robot/clip_length"][()]
    lengths[-1] += 50
    h["robot/clip_length"][...] = lengths


def _nan_actions(h):
    a = h["robot/actions"][()]
    a[3, 0] = np.nan
    h["robot/actions"][...] = a


BAD = {
    # name: (maker, a phrase the one-line message must contain)
    "not_hdf5": (_not_hdf5, "not an HDF5 file"),
    "other_format": (_other_format, "hralign_format"),
    "truncated": (_truncated, "truncated"),
    "empty": (_empty, "empty"),
    "missing_pairs": (_mutate(lambda h: h.__delitem__("pairs")), "/pairs: missing"),
    "pair_out_of_range": (_mutate(_pair_out_of_range), "out of range"),
    "clips_past_frames": (_mutate(_clips_past_frames), "run past"),
    "wrong_dtype": (_mutate(lambda h: _replace(h, "human/frames", h["human/frames"][()].astype(np.float32))), "dtype float32"),
    "wrong_channels": (_mutate(lambda h: _replace(h, "robot/frames", h["robot/frames"][()][..., :1])), "1 channels"),
    "nan_actions": (_mutate(_nan_actions), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_reports_bad_file(case, tiny_pairs, tmp_path):
    maker, phrase = BAD[case]
    bad = tmp_path / f"{case}.h5"
    maker(tiny_pairs, bad)
    before = bad.read_bytes()
    problems = validate(bad)
    assert problems, f"{case}: validate passed a bad file"
    assert any(phrase in p for p in problems), problems
    assert all("\n" not in p and str(bad) in p for p in problems)
    assert bad.read_bytes() == before  # inputs are only read

    code, out, err = run_cli("pairs", "validate", str(bad))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert phrase in out + err


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["info", "split"])
def test_commands_exit_2_one_line_no_output(case, command, tiny_pairs, tmp_path):
    maker, phrase = BAD[case]
    bad = tmp_path / "in" / f"{case}.h5"
    bad.parent.mkdir()
    maker(tiny_pairs, bad)
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = ["pairs", "info", str(bad)] if command == "info" else ["pairs", "split", str(bad), "--out", str(outdir / "s.h5")]
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert "Traceback" not in err
    assert list(outdir.iterdir()) == []  # nothing written, not even a temporary file
    assert sorted(p.name for p in bad.parent.iterdir()) == [bad.name]


def test_collects_every_problem_not_just_the_first(tiny_pairs, tmp_path):
    bad = _copy(tiny_pairs, tmp_path / "many.h5")
    with h5py.File(bad, "r+") as h:
        _pair_out_of_range(h)
        _clips_past_frames(h)
        _nan_actions(h)
        ct = h["human/clip_task"][()]
        ct[0] = 77
        h["human/clip_task"][...] = ct
        h["split"][0] = 3
    problems = validate(bad)
    for phrase in ("out of range", "run past", "NaN", "task index outside", "/split"):
        assert any(phrase in p for p in problems), (phrase, problems)
    code, out, err = run_cli("pairs", "validate", str(bad))
    assert code == 2 and f"{len(problems)} problems" in err and len(out.strip().splitlines()) == len(problems)


def test_valid_file_passes_and_cli_says_so(tiny_pairs):
    assert validate(tiny_pairs) == []
    assert validate(tiny_pairs, deep=True) == []
    code, out, err = run_cli("pairs", "validate", str(tiny_pairs), "--deep")
    assert code == 0 and "valid" in out and err == ""


def test_deep_finds_corrupt_middle_chunk(tmp_path):
    path = synthesize(tmp_path / "g.h5", SynthConfig(num_tasks=2, pairs_per_task=2, frames=4, image_size=16, compression="gzip"))
    with h5py.File(path, "r") as h:
        offset = h["human/frames"].id.get_chunk_info(5).byte_offset  # a middle frame's compressed chunk
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 16] = bytes(16)
    path.write_bytes(bytes(raw))
    assert validate(path) == []  # quick mode only reads the first and last frame
    assert any("unreadable" in p for p in validate(path, deep=True))


# -- hypothesis: mutate a valid file; validate reports it or passes it, never crashes ----------
@pytest.fixture(scope="module")
def micro_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "micro.h5"
    return synthesize(path, SynthConfig(num_tasks=2, pairs_per_task=2, frames=4, image_size=16, seed=3))


def _structural(h: h5py.File, choice: int, value: int) -> None:
    keys: list[str] = []
    h.visit(lambda k: keys.append(k) if isinstance(h[k], h5py.Dataset) else None)
    key = keys[choice % len(keys)]
    kind = value % 4
    if kind == 0:
        del h[key]
    elif kind == 1 and h[key].dtype.kind in "iuf" and h[key].size:
        data = h[key][()]
        flat = data.reshape(-1)
        flat[value % flat.size] = np.array((value // 4) % 256 - 50).astype(flat.dtype)  # wraps for unsigned
        h[key][...] = data
    elif kind == 2:
        data = h[key][()]
        _replace(h, key, np.asarray(data).reshape(-1)[: max(0, data.size - 1)] if data.dtype.kind != "O" else np.zeros(2))
    else:
        attrs = list(h.attrs)
        if attrs:
            h.attrs[attrs[value % len(attrs)]] = value - 5


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(["bytes", "truncate", "structure"]), a=st.integers(0, 10**9), b=st.integers(0, 10**6),
       n=st.integers(1, 8))
def test_mutated_file_never_crashes_validate(micro_pairs, tmp_path_factory, mode, a, b, n):
    path = tmp_path_factory.mktemp("mut") / "m.h5"
    raw = bytearray(micro_pairs.read_bytes())
    if mode == "bytes":
        for i in range(n):
            raw[(a + i * 7919) % len(raw)] = (b + i) % 256
        path.write_bytes(bytes(raw))
    elif mode == "truncate":
        path.write_bytes(bytes(raw[: a % len(raw)]))
    else:
        path.write_bytes(bytes(raw))
        with h5py.File(path, "r+") as h:
            _structural(h, a, b)
    problems = validate(path, deep=True)
    assert isinstance(problems, list) and all(isinstance(p, str) and "\n" not in p for p in problems)
    if not problems:  # "passes it": then every clip and per-frame array really reads
        pf = PairsFile(path)
        for d in pf.domains:
            for c in range(pf.num_clips(d)):
                assert pf.read_clip(d, c).shape[0] == pf.clip_lengths(d)[c]
                for name in ("actions", "state"):
                    if pf.has(d, name):
                        assert np.isfinite(pf.read_clip(d, c, name=name)).all()
        pf.close()
