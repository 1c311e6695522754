"""Export: LoRA-family merge -> plain torchvision ResNet / R3M layout / safetensors / TorchScript match the adapted model."""

from __future__ import annotations

import warnings

import peft
import pytest
import torch
import torchvision
from conftest import run_cli
from safetensors.torch import load_file
from torch import nn

from hralign.adapters import attach_adapter, save_adapter
from hralign.adapters.export import export_adapter, merge_adapter
from hralign.encoders import RandomInitWarning, load_encoder

X = torch.randint(0, 256, (3, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _base():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return load_encoder("r3m-resnet18", image_size=32)


def _trained(method, tmp_path, **options):
    model = attach_adapter(_base(), method, **options)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    save_adapter(model, tmp_path / "adapter")
    return model


@pytest.mark.parametrize("method", ["lora", "loha", "lokr", "ia3"])
def test_merged_export_reloads_in_torchvision_and_r3m_layout(tmp_path, method):
    model = _trained(method, tmp_path)
    expected = model(X)
    assert not torch.allclose(expected, _base()(X), atol=1e-3)  # the adapter does something
    code, out, err = run_cli("export", "--adapter", str(tmp_path / "adapter"), "--format", "torchvision", "--out", str(tmp_path / "tv.pth"))
    assert code == 0, err
    plain = torchvision.models.resnet18(weights=None)
    plain.fc = nn.Identity()
    plain.load_state_dict(torch.load(tmp_path / "tv.pth", weights_only=True))
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(model.preprocess(X)), expected, atol=1e-5)
    export_adapter(tmp_path / "adapter", "r3m", tmp_path / "model.pt")
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(ckpt) == {"r3m"} and all(k.startswith("module.convnet.") for k in ckpt["r3m"])
    r3m = load_encoder("r3m-resnet18", weights=tmp_path / "model.pt", image_size=32)
    assert torch.allclose(r3m(X), expected, atol=1e-5)


def test_merge_and_safetensors_and_torchscript(tmp_path):
    model = _trained("lora", tmp_path)
    merged = merge_adapter(model)
    assert torch.allclose(merged(X), model(X), atol=1e-5)
    assert not any("lora" in k for k in merged.state_dict())
    export_adapter(tmp_path / "adapter", "safetensors", tmp_path / "enc.safetensors")
    again = load_encoder("r3m-resnet18", weights=tmp_path / "enc.safetensors", image_size=32)
    assert torch.allclose(again(X), model(X), atol=1e-5)
    export_adapter(tmp_path / "adapter", "torchscript", tmp_path / "enc.ts")
    assert torch.allclose(torch.jit.load(str(tmp_path / "enc.ts"))(X), model(X), atol=1e-5)


def test_bottleneck_exports_modules_and_refuses_plain_layouts(tmp_path):
    model = _trained("bottleneck", tmp_path)
    for fmt in ("r3m", "torchvision"):
        code, out, err = run_cli("export", "--adapter", str(tmp_path / "adapter"), "--format", fmt, "--out", str(tmp_path / f"x.{fmt}"))
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
        assert "safetensors or torchscript" in err and not (tmp_path / f"x.{fmt}").exists()
    export_adapter(tmp_path / "adapter", "safetensors", tmp_path / "b.safetensors")
    state = load_file(str(tmp_path / "b.safetensors"))
    assert any(k.startswith("adapters.late.") for k in state)
    fresh = attach_adapter(_base(), "bottleneck")
    fresh.load_state_dict(state)
    assert torch.equal(fresh(X), model(X))
    export_adapter(tmp_path / "adapter", "torchscript", tmp_path / "b.ts")
    assert torch.allclose(torch.jit.load(str(tmp_path / "b.ts"))(X), model(X), atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_peft_from_pretrained_on_rebuilt_base(tmp_path, method):
    model = _trained(method, tmp_path)
    base = _base()
    wrapped = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    with torch.no_grad():
        assert torch.allclose(wrapped(X), model(X), atol=1e-6)
