"""hralign.device: the one --device / --precision resolution."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hralign.device import DeviceConfig, Placement, check_precision, resolve, resolve_device
from hralign.errors import HRAlignError


def test_config_defaults_and_help():
    cfg = DeviceConfig()
    assert (cfg.device, cfg.precision) == ("auto", "fp32")
    import dataclasses
    assert all(f.metadata.get("help") for f in dataclasses.fields(DeviceConfig))


@pytest.mark.parametrize("kw,name", [({"device": "gpu"}, "--device"), ({"device": "cuda:x"}, "--device"),
                                     ({"precision": "fp16"}, "--precision"), ({"device": 3}, "--device")])
def test_config_rejects_unknown_names(kw, name):
    with pytest.raises(HRAlignError, match=name) as e:
        DeviceConfig(**kw)
    assert "\n" not in str(e.value)


def test_cpu_resolves_everywhere():
    p = resolve(DeviceConfig("cpu", "fp32"))
    assert p == Placement(torch.device("cpu"), "fp32")
    assert p.mixed_precision == "no"
    assert isinstance(p.autocast(), contextlib.nullcontext)
    assert p.to_dict() == {"device": "cpu", "precision": "fp32"}


def test_auto_matches_the_machine():
    dev = resolve_device("auto", local_rank=0)
    assert dev.type == ("cuda" if torch.cuda.is_available() else dev.type)
    if not torch.cuda.is_available():
        assert dev.type in ("cpu", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(HRAlignError, match=r"`--device cuda`: CUDA is not available"):
        resolve(DeviceConfig("cuda"))


def test_bf16_on_cpu_names_the_option():
    with pytest.raises(HRAlignError, match=r"`--precision bf16` needs a CUDA device"):
        resolve(DeviceConfig("cpu", "bf16"))
    with pytest.raises(HRAlignError, match="--precision"):
        check_precision("int8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_local_rank_and_bf16():
    dev = resolve_device("cuda", local_rank=0)
    assert dev == torch.device("cuda", 0)
    with pytest.raises(HRAlignError, match="GPU"):
        resolve_device("cuda", local_rank=torch.cuda.device_count())
    if torch.cuda.is_bf16_supported():
        p = resolve(DeviceConfig("cuda", "bf16"))
        assert p.mixed_precision == "bf16"
        with p.autocast():
            y = torch.nn.Linear(4, 4).cuda()(torch.ones(2, 4, device="cuda"))
        assert y.dtype == torch.bfloat16


def test_local_rank_from_environment(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cpu") == torch.device("cpu")  # CPU ignores the rank


def test_resolve_rejects_other_types():
    with pytest.raises(HRAlignError, match="DeviceConfig"):
        resolve("cpu")
