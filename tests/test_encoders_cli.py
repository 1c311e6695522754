"""CLI of encoders/adapters: listing, checks, info, and every bad input -> exit 2 with one line."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import run_cli

from hralign.adapters import attach_adapter, save_adapter
from hralign.encoders import RandomInitWarning, load_encoder


def _one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = load_encoder("r3m-resnet18", image_size=32)
    path = tmp_path_factory.mktemp("ad") / "adapter"
    save_adapter(attach_adapter(enc, "bottleneck"), path)
    return path


def test_list_and_check():
    code, out, err = run_cli("encoders", "list")
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("r3m-resnet50"))
    assert "2048" in line and "224" in line and "23,508,032" in line
    assert "d4r-vit-b16" in out and "timm:" in out and "hf:" in out
    code, out, err = run_cli("encoders", "check", "r3m-resnet18", "--image-size", "32")
    assert code == 0 and "feature dim  512" in out and "(2, 512)" in out and "random" in err


def test_adapters_info_resnet50_count(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = load_encoder("r3m-resnet50", image_size=32)
    save_adapter(attach_adapter(enc, "bottleneck"), tmp_path / "ad50")
    code, out, err = run_cli("adapters", "info", str(tmp_path / "ad50"))
    assert code == 0, err
    assert "1,582,080" in out and "6.73%" in out and "late" in out and "bottleneck" in out


def test_help_has_examples():
    for args in (("encoders", "list"), ("encoders", "check"), ("adapters", "info"), ("export",)):
        code, out, _ = run_cli(*args, "--help")
        assert code == 0 and "Example" in out


def test_bad_inputs_exit_2_one_line(tmp_path, adapter_dir):
    msg = _one_line_error(*run_cli("encoders", "check", "resnet-999")[::2])
    assert "r3m-resnet50" in msg and "d4r-vit-b16" in msg  # lists the known names
    msg = _one_line_error(*run_cli("encoders", "check", "r3m-resnet50", "--weights", str(tmp_path / "model.pt"))[::2])
    assert "~/.r3m/r3m_50/model.pt" in msg and "never downloads" in msg
    # wrong architecture: an R3M-18 file for a ResNet-50
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    torch.save({"r3m": {f"module.convnet.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "r18.pt")
    msg = _one_line_error(*run_cli("encoders", "check", "r3m-resnet50", "--weights", str(tmp_path / "r18.pt"), "--image-size", "32")[::2])
    assert "wrong shape" in msg and "layer" in msg
    # a pickle weights_only refuses
    import argparse

    torch.save({"r3m": {}, "cfg": argparse.Namespace(a=1)}, tmp_path / "pickle.pt")
    msg = _one_line_error(*run_cli("encoders", "check", "r3m-resnet18", "--weights", str(tmp_path / "pickle.pt"))[::2])
    assert "--trust-checkpoint" in msg


def test_adapter_dir_missing_or_edited_meta(tmp_path, adapter_dir):
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(adapter_dir, edited)
    meta = json.loads((edited / "hralign.json").read_text())
    meta["encoder"]["name"] = "r3m-resnet50"
    (edited / "hralign.json").write_text(json.dumps(meta))
    msg = _one_line_error(*run_cli("adapters", "info", str(edited))[::2])
    assert "hralign.json" in msg and "edited" in msg
    msg = _one_line_error(*run_cli("export", "--adapter", str(edited), "--format", "safetensors", "--out", str(tmp_path / "o"))[::2])
    assert "checksum" in msg
    (edited / "hralign.json").write_text("{not json")
    assert "not valid JSON" in _one_line_error(*run_cli("adapters", "info", str(edited))[::2])
    (edited / "hralign.json").unlink()
    msg = _one_line_error(*run_cli("export", "--adapter", str(edited), "--format", "torchscript", "--out", str(tmp_path / "o"))[::2])
    assert "hralign.json" in msg and "missing" in msg


def test_unsupported_method_placement_exit_2(tiny_pairs, tmp_path):
    msg = _one_line_error(
        *run_cli(
            "adapt", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18", "--method", "lora",
            "--placement", "early", "--batch-size", "4", "--out", str(tmp_path / "run"),
        )[::2]
    )
    assert "placement" in msg and "early" in msg
