"""Encoder contract: input checks, preprocessing, staged forward, freezing, save/load, registry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hralign.encoders import (
    Encoder,
    RandomInitWarning,
    build_from_spec,
    load_encoder,
    register_encoder,
    save_encoder,
)
from hralign.errors import HRAlignError


@pytest.fixture(scope="module")
def enc18():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return load_encoder("r3m-resnet18", image_size=32)


def _images(n=3, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def test_random_init_warns_once_and_is_frozen():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        enc = load_encoder("r3m-resnet18", image_size=32)
    assert [w.category for w in rec].count(RandomInitWarning) == 1
    assert isinstance(enc, Encoder) and enc.feature_dim == 512 and enc.image_size == 32
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())


def test_forward_shapes_and_input_forms_agree(enc18):
    x = _images()
    y = enc18(x)
    assert y.shape == (3, 512) and y.dtype == torch.float32
    # numpy uint8 and float [0,1] channels-first give the same features
    assert torch.allclose(enc18(x.numpy()), y)
    xf = x.permute(0, 3, 1, 2).float() / 255.0
    assert torch.allclose(enc18(xf), y, atol=1e-5)
    # a single image is a batch of one
    assert torch.allclose(enc18(x[0]), y[:1], atol=1e-6)


def test_preprocess_is_imagenet_normalisation(enc18):
    x = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    p = enc18.preprocess(x)
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert p.shape == (1, 3, 32, 32)
    assert torch.allclose(p[0, :, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(2, 3, 16, 16) * 255,  # float outside [0, 1]
        torch.zeros(2, 3, 16, 16, dtype=torch.uint8),  # uint8 channels-first
        torch.zeros(2, 16, 16, 3, dtype=torch.int64),  # wrong dtype
        np.zeros((16, 16), dtype=np.uint8),  # no channels
    ],
)
def test_bad_inputs_raise(enc18, bad):
    with pytest.raises(HRAlignError):
        enc18(bad)


def test_staged_forward_composes_to_forward(enc18):
    x = _images(2)
    y = enc18(x)
    p = enc18.preprocess(x)
    assert enc18.stage_names == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    for stage in enc18.stage_names:
        assert torch.allclose(enc18.forward_from(enc18.forward_until(p, stage), stage), y, atol=1e-6)
    with pytest.raises(HRAlignError, match="stages are"):
        enc18.forward_until(p, "layer9")


def test_random_init_is_repeatable_and_spec_rebuilds(enc18):
    again = build_from_spec(enc18.spec)
    x = _images(2)
    assert torch.equal(again(x), enc18(x))


def test_save_encoder_round_trip(enc18, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = load_encoder("r3m-resnet18", image_size=32)
    enc.set_trainable(True)
    with torch.no_grad():
        enc.model.conv1.weight.mul_(1.5)  # weights differ from the seeded random init
    save_encoder(enc, tmp_path / "enc")
    back = load_encoder(tmp_path / "enc")
    x = _images(2)
    enc.freeze()
    assert torch.equal(back(x), enc(x))
    assert not torch.allclose(back(x), enc18(x))
    assert back.spec["sha256"] and build_from_spec(back.spec)(x).equal(back(x))


def test_set_trainable_trains_and_refreezes(enc18):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = load_encoder("r3m-resnet18", image_size=32)
    enc.set_trainable(True).train()
    assert enc.training and all(p.requires_grad for p in enc.parameters())
    enc.set_trainable(False).train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())


def test_registry_errors():
    with pytest.raises(HRAlignError, match="r3m-resnet50"):
        load_encoder("r3m-resnet99")
    with pytest.raises(HRAlignError, match="already registered"):
        register_encoder("r3m-resnet18", lambda s: None)
