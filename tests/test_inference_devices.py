"""Inference commands share --device / --precision (hralign.device): bad values exit 2 with one line, nothing written."""

from __future__ import annotations

import pytest
import torch

from conftest import run_cli

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


def _commands(tiny_pairs, tiny_lam, tmp_path) -> dict[str, list[str]]:
    p = str(tiny_pairs)
    return {
        "analyze": ["analyze", "--pairs", p, "--encoder", "r3m-resnet18", "--image-size", "32", "--no-umap",
                    "--out", str(tmp_path / "report")],
        "lam label": ["lam", "label", "--pairs", p, "--lam", str(tiny_lam[0]), "--out", str(tmp_path / "labels.h5")],
        "policy eval": ["policy", "eval", "--pairs", p, "--policy", str(tmp_path / "no-policy")],
        "sim eval": ["sim", "eval", "--pairs", p, "--out", str(tmp_path / "sim")],
    }


def _check_one_line_exit_2(args: list[str], option: str, tmp_path) -> None:
    before = sorted(tmp_path.iterdir())
    code, out, err = run_cli(*args)
    assert code == 2, (args, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], err
    assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("command", ["analyze", "lam label", "policy eval", "sim eval"])
def test_bf16_on_cpu_exits_2(command, tiny_pairs, tiny_lam, tmp_path):
    args = _commands(tiny_pairs, tiny_lam, tmp_path)[command]
    _check_one_line_exit_2([*args, "--device", "cpu", "--precision", "bf16"], "--precision bf16", tmp_path)


@no_cuda
@pytest.mark.parametrize("command", ["analyze", "lam label", "policy eval", "sim eval"])
def test_cuda_without_cuda_exits_2(command, tiny_pairs, tiny_lam, tmp_path):
    args = _commands(tiny_pairs, tiny_lam, tmp_path)[command]
    _check_one_line_exit_2([*args, "--device", "cuda"], "--device cuda", tmp_path)


@pytest.mark.parametrize("command", ["analyze", "lam label", "policy eval", "sim eval"])
def test_unknown_device_name_exits_2(command, tiny_pairs, tiny_lam, tmp_path):
    args = _commands(tiny_pairs, tiny_lam, tmp_path)[command]
    _check_one_line_exit_2([*args, "--device", "tpu"], "--device", tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_lam_label_bf16_on_cuda_matches_fp32_codes_mostly(tiny_pairs, tiny_lam, tmp_path):
    """bf16 autocast labels: latents within bf16 rounding of fp32, codes mostly the same."""
    from hralign.lam.labels import read_labels

    base = ["lam", "label", "--pairs", str(tiny_pairs), "--lam", str(tiny_lam[0]), "--device", "cuda"]
    assert run_cli(*base, "--out", str(tmp_path / "fp32.h5"))[0] == 0
    assert run_cli(*base, "--precision", "bf16", "--out", str(tmp_path / "bf16.h5"))[0] == 0
    a, b = read_labels(tmp_path / "fp32.h5"), read_labels(tmp_path / "bf16.h5")
    for d in ("human", "robot"):
        diff = abs(a[d]["latents"] - b[d]["latents"]).max()
        scale = abs(a[d]["latents"]).max()
        assert diff <= 0.05 * scale, (d, diff, scale)
        assert (a[d]["codes"] == b[d]["codes"]).mean() >= 0.9
