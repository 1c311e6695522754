"""`hralign lam` end to end on tiny synthetic pairs: train, resume, label, eval, lam: encoder, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import TINY_LAM_ARGS as TINY
from conftest import run_cli
from safetensors.torch import load_file

from hralign.errors import HRAlignError


@pytest.fixture(scope="session")
def lam_run(tiny_lam):
    return tiny_lam


def test_train_writes_lam_dir_metrics_and_prints_baseline(lam_run):
    out, stdout = lam_run
    assert "vs copy-x_t baseline" in stdout and "codebook perplexity" in stdout
    for name in ("lam.json", "model.safetensors", "metrics.jsonl", "run.json", "checkpoints/step_00000020/state.pt"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [5, 10, 15, 20]
    for r in train_rows:
        # PSNR is of the logged window's mean squared errors (pixels in [0, 1])
        assert r["psnr"] == pytest.approx(10 * np.log10(1 / r["recon_mse"]))
        assert r["copy_psnr"] == pytest.approx(10 * np.log10(1 / r["copy_mse"]))
        # exp(entropy) of each token's code histogram is at most the number of codes it used, and the
        # pooled histogram's at least the geometric mean of the tokens' (entropy is concave)
        ppl, used = r["perplexity_per_token"], r["usage_per_token"]
        assert len(ppl) == len(used) == 4
        assert all(1.0 <= p <= u + 1e-9 for p, u in zip(ppl, used)), (ppl, used)
        assert r["perplexity"] >= float(np.exp(np.mean(np.log(ppl)))) - 1e-9
    assert "restarted_codes" in train_rows[0]
    final = rows[-1]["eval"]
    assert rows[-1]["step"] == 20 and final["eval_pairs"] == 32
    assert final["psnr"] == pytest.approx(10 * np.log10(1 / final["recon_mse"]))
    meta = json.loads((out / "lam.json").read_text())
    assert meta["hralign_format"] == "lam" and meta["hralign_version"] == 1
    assert meta["config"]["image_size"] == 32 and meta["config"]["gap"] == 2


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_pairs, tmp_path):
    args = ["--pairs", str(tiny_pairs), "--gap", "2", *TINY, "--checkpoint-every", "6"]
    code, _, err = run_cli("lam", "train", "--out", str(tmp_path / "a"), "--steps", "12", *args)
    assert code == 0, err
    code, _, err = run_cli("lam", "train", "--out", str(tmp_path / "b"), "--steps", "6", *args)
    assert code == 0, err
    # resume needs only --steps; the other options come from the run being resumed
    code, _, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "b"), "--steps", "12", "--resume")
    assert code == 0, err
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    # the first run's rows up to its last checkpoint stay (its last window at step 6; its final
    # evaluation came after that checkpoint and is cut), then the resumed ones
    assert [r["step"] for r in rows if "loss" in r] == [5, 6, 10, 12]
    assert [r["step"] for r in rows if "eval" in r] == [12]
    # an architecture flag that contradicts the run is refused
    code, _, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "b"), "--steps", "14",
                           "--resume", "--tokens", "2")
    assert code == 2 and "--tokens 4" in err and len(err.strip().splitlines()) == 1


def test_existing_out_needs_resume_or_overwrite(lam_run, tiny_pairs):
    out, _ = lam_run
    code, _, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(out), "--steps", "1", *TINY)
    assert code == 2 and "--resume" in err and "Traceback" not in err


def test_label_writes_documented_format(lam_run, tiny_pairs, tmp_path):
    from hralign.hashing import sha256_file
    from hralign.lam.labels import read_labels
    from hralign.pairs import PairsFile

    out, _ = lam_run
    path = tmp_path / "labels.h5"
    code, stdout, err = run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(out), "--out", str(path))
    assert code == 0, err
    lab = read_labels(path)
    a = lab["attrs"]
    assert (a["gap"], a["codebook_size"], a["tokens"], a["latent_dim"]) == (2, 8, 4, 32)
    assert a["pairs_sha256"] == sha256_file(tiny_pairs)
    pf = PairsFile(tiny_pairs)
    for d in ("human", "robot"):
        rows = lab[d]
        n = int((pf.clip_lengths(d) - 2).clip(min=0).sum())
        assert rows["codes"].shape == (n, 4) and rows["codes"].dtype == np.int64
        assert rows["latents"].shape == (n, 32) and rows["latents"].dtype == np.float32
        assert rows["codes"].min() >= 0 and rows["codes"].max() < 8
        assert (rows["t"] + 2 < pf.clip_lengths(d)[rows["clip"]]).all()
    with h5py.File(path, "r") as f:  # chunked, as latents.h5, so analysis reads it a chunk at a time
        for d in ("human", "robot"):
            for name in ("codes", "latents", "clip", "t"):
                assert f[f"{d}/{name}"].chunks is not None and f[f"{d}/{name}"].chunks[0] <= 4096, (d, name)
    # the labels are the lam: encoder's output on those frame pairs
    import hralign

    enc = hralign.load_encoder(f"lam:{out}")
    r = lab["robot"]
    frames = np.stack([pf.read_clip("robot", int(c), [int(t), int(t) + 2]) for c, t in zip(r["clip"][:6], r["t"][:6])])
    np.testing.assert_allclose(enc(frames).numpy(), r["latents"][:6], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(enc.codes(frames).numpy(), r["codes"][:6])
    # read_labels refuses other files
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["hralign_format"] = "pairs"
    with pytest.raises(HRAlignError, match="expected 'lam_labels'"):
        read_labels(tmp_path / "other.h5")


def test_eval_prints_agreement_and_probe(lam_run, tiny_pairs, tmp_path):
    out, _ = lam_run
    path = tmp_path / "labels.h5"
    assert run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(out), "--out", str(path))[0] == 0
    code, stdout, err = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", str(path), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    ag = res["agreement"]
    assert ag["matched"] == 12 * 6  # 12 frame-aligned pairs x (8 - gap) frames
    # recomputed from labels.h5: codes of each pair's human and robot clip at the same t
    from hralign.lam.labels import read_labels
    from hralign.pairs import PairsFile

    lab, pf = read_labels(path), PairsFile(tiny_pairs)
    rows = {d: {(int(c), int(t)): i for i, (c, t) in enumerate(zip(lab[d]["clip"], lab[d]["t"]))} for d in ("human", "robot")}
    matched = [(rows["human"][(int(h), t)], rows["robot"][(int(r), t)]) for h, r in pf.pairs for t in range(6)]
    ch = lab["human"]["codes"][[m[0] for m in matched]]
    cr = lab["robot"]["codes"][[m[1] for m in matched]]
    assert ag["agreement_mean"] == pytest.approx(float((ch == cr).mean()))
    chance = [sum(np.mean(ch[:, j] == k) * np.mean(cr[:, j] == k) for k in range(8)) for j in range(ch.shape[1])]
    assert ag["chance_mean"] == pytest.approx(float(np.mean(chance)))
    assert res["probe"]["rows"] == 12 * 6 and res["probe"]["clips"] == 12
    code, stdout, _ = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", str(path))
    assert "chance" in stdout and "shuffled-label control" in stdout


def test_code_agreement_counts_matches(tiny_pairs):
    from hralign.lam.evaluate import code_agreement
    from hralign.pairs import PairsFile

    pf = PairsFile(tiny_pairs)
    rng = np.random.default_rng(0)

    def rows(domain):
        clips = np.repeat(np.arange(pf.num_clips(domain)), 6)
        return {"clip": clips, "t": np.tile(np.arange(6), pf.num_clips(domain)),
                "codes": rng.integers(0, 4, (len(clips), 2)), "latents": rng.normal(size=(len(clips), 3)).astype(np.float32)}

    lab = {"attrs": {"codebook_size": 4}, "human": rows("human"), "robot": rows("robot")}
    lab["robot"]["codes"] = lab["human"]["codes"].copy()  # synth pairs human clip i with robot clip i
    lab["robot"]["codes"][::2, 0] = (lab["robot"]["codes"][::2, 0] + 1) % 4  # half of token 0 disagrees
    res = code_agreement(lab, pf)
    assert res["agreement_per_token"] == pytest.approx([0.5, 1.0])
    assert res["agreement_all"] == pytest.approx(0.5)


def test_lam_encoder_contract_and_adapters(lam_run):
    import hralign
    from hralign.encoders import build_from_spec

    out, _ = lam_run
    enc = hralign.load_encoder(f"lam:{out}")
    assert enc.feature_dim == 32 and enc.image_size == 32 and enc.frozen
    assert not any(p.requires_grad for p in enc.parameters())
    pairs_u8 = torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8)
    full = enc(pairs_u8)
    assert full.shape == (3, 32)
    x = enc.preprocess(pairs_u8)
    for stage in enc.stage_names:
        torch.testing.assert_close(enc.forward_from(enc.forward_until(x, stage), stage), full)
    torch.testing.assert_close(build_from_spec(enc.spec)(pairs_u8), full)
    with pytest.raises(HRAlignError, match="48x48 but the LAM was trained on 32x32"):
        enc(torch.zeros(1, 2, 48, 48, 3, dtype=torch.uint8))
    # PEFT LoRA on the IDM's conv head and HR-Align's bottleneck after the last conv stage
    lora = hralign.attach_adapter(enc, "lora", target=r"^idm\.head\.[13]$", r=4)
    assert 0 < sum(p.numel() for p in lora.parameters() if p.requires_grad) < 5000
    torch.testing.assert_close(lora(pairs_u8), full)  # LoRA B starts at zero
    bott = hralign.attach_adapter(enc, "bottleneck", placement="late", groups=1)
    assert bott.first_adapted_stage == "adapter.late"
    torch.testing.assert_close(bott(pairs_u8), full)


def test_bad_inputs_exit_2_with_one_line(lam_run, tiny_pairs, small_pairs, tmp_path):
    out, _ = lam_run
    # --gap longer than the clips (tiny clips have 8 frames)
    code, _, err = run_cli("lam", "train", "--pairs", str(tiny_pairs), "--out", str(tmp_path / "g"), "--gap", "20",
                           "--steps", "1", *TINY)
    assert code == 2 and "--gap` 20 is longer than every clip" in err
    assert len(err.strip().splitlines()) == 1
    # frames of the wrong size for the trained LAM (small_pairs has 48 px frames)
    code, _, err = run_cli("lam", "label", "--pairs", str(small_pairs), "--lam", str(out), "--out", str(tmp_path / "l.h5"))
    assert code == 2 and "48x48 but the LAM reads 32x32" in err
    assert len(err.strip().splitlines()) == 1
    # a LAM directory from another version
    other = tmp_path / "other_lam"
    other.mkdir()
    for name in ("model.safetensors",):
        (other / name).write_bytes((out / name).read_bytes())
    meta = json.loads((out / "lam.json").read_text())
    meta["hralign_version"] = 2
    (other / "lam.json").write_text(json.dumps(meta))
    code, _, err = run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(other), "--out", str(tmp_path / "l.h5"))
    assert code == 2 and "`hralign_version` is 2, expected 1" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "l.h5").exists()


def test_label_with_an_adapter_on_the_robot_branch(lam_run, tiny_pairs, tmp_path):
    import hralign
    from hralign.lam.labels import read_labels

    out, _ = lam_run
    model = hralign.attach_adapter(hralign.load_encoder(f"lam:{out}"), "bottleneck", placement="late", groups=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.5)  # a visibly non-identity adapter
    hralign.save_adapter(model, tmp_path / "adapter")
    code, _, err = run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(out), "--out", str(tmp_path / "a.h5"),
                           "--robot-lam", str(tmp_path / "adapter"))
    assert code == 0, err
    code, _, err = run_cli("lam", "label", "--pairs", str(tiny_pairs), "--lam", str(out), "--out", str(tmp_path / "b.h5"))
    assert code == 0, err
    after, before = read_labels(tmp_path / "a.h5"), read_labels(tmp_path / "b.h5")
    np.testing.assert_array_equal(after["human"]["latents"], before["human"]["latents"])  # human branch stays frozen
    assert not np.allclose(after["robot"]["latents"], before["robot"]["latents"])
    reloaded = hralign.load_encoder(str(tmp_path / "adapter"))
    from hralign.pairs import PairsFile

    pf = PairsFile(tiny_pairs)
    r = after["robot"]
    frames = np.stack([pf.read_clip("robot", int(c), [int(t), int(t) + 2]) for c, t in zip(r["clip"][:4], r["t"][:4])])
    np.testing.assert_allclose(reloaded(frames).numpy(), r["latents"][:4], rtol=1e-4, atol=1e-5)
    code, stdout, err = run_cli("lam", "eval", "--pairs", str(tiny_pairs), "--labels", str(tmp_path / "a.h5"),
                                "--split", "val", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["split"] == "val" and 0 < res["agreement"]["matched"] < 12 * 6
