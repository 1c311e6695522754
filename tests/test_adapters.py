"""Adapters: identity at init, only adapter parameters train, BN buffers fixed, save/load round trips."""

from __future__ import annotations

import warnings

import pytest
import torch

from hralign.adapters import (
    attach_adapter,
    backbone_parameters,
    read_adapter_meta,
    save_adapter,
    trainable_parameters,
)
from hralign.encoders import RandomInitWarning, load_encoder
from hralign.errors import HRAlignError

METHODS = ["bottleneck", "lora", "loha", "lokr", "ia3", "full"]


def _load(name="r3m-resnet18", size=32):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return load_encoder(name, image_size=size)


@pytest.fixture(scope="module")
def enc18():
    return _load()


def _images(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def test_resnet50_default_bottleneck_has_hralign_parameter_count():
    enc = _load("r3m-resnet50", 32)
    model = attach_adapter(enc, "bottleneck")
    assert trainable_parameters(model) == 1_582_080
    assert backbone_parameters(model) == sum(p.numel() for p in enc.parameters()) == 23_508_032
    assert model.stage_names[-2:] == ["adapter.late", "head"]
    assert model.first_adapted_stage == "adapter.late"


@pytest.mark.parametrize("method", METHODS)
def test_fresh_adapter_is_identity_and_input_untouched(enc18, method):
    x = _images()
    before = {k: v.clone() for k, v in enc18.state_dict().items()}
    model = attach_adapter(enc18, method)
    assert torch.equal(model(x), enc18(x))
    assert trainable_parameters(model) > 0 and trainable_parameters(enc18) == 0
    assert all(torch.equal(v, enc18.state_dict()[k]) for k, v in before.items())
    assert set(enc18.state_dict()) == set(before)  # no PEFT layers injected into the input encoder


@pytest.mark.parametrize("method", ["bottleneck", "lora"])
def test_one_step_changes_only_adapter_and_keeps_bn_buffers(enc18, method):
    model = attach_adapter(enc18, method)
    model.train()  # a wrapper calling .train() must not unfreeze BatchNorm statistics
    named = dict(model.named_parameters())
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # the zero-initialised last layer makes step 2 the first to move every layer
        opt.zero_grad()
        loss = model(_images(seed=1)).pow(2).mean() + model(_images(seed=2)).sum()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in named.items() if p.requires_grad}
    assert changed and changed <= trainable
    bn = [k for k in before if "running_" in k or "num_batches_tracked" in k]
    assert bn and all(torch.equal(before[k], after[k]) for k in bn)
    if method == "bottleneck":  # every adapter layer learns (no dead zero-init layer)
        assert {k.rsplit(".", 1)[0] for k in changed} >= {f"adapters.late.{i}.{l}" for i in range(3) for l in ("down", "mid", "up")}


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(enc18, tmp_path, method):
    model = attach_adapter(enc18, method)
    _perturb(model)
    x = _images()
    assert not torch.allclose(model(x), enc18(x))
    save_adapter(model, tmp_path / "ad")
    back = load_encoder(tmp_path / "ad")
    assert torch.equal(back(x), model(x))
    assert trainable_parameters(back) == 0 and not back.training
    meta = read_adapter_meta(tmp_path / "ad")
    assert meta["method"] == method and meta["encoder"]["name"] == "r3m-resnet18"
    assert meta["trainable_parameters"] == trainable_parameters(model)


def test_full_finetune_trains_every_weight_of_a_copy_and_saves_them(enc18, tmp_path):
    before = {k: v.clone() for k, v in enc18.state_dict().items()}
    model = attach_adapter(enc18, "full")
    assert trainable_parameters(model) == sum(p.numel() for p in enc18.parameters())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    model(_images(seed=1)).pow(2).mean().backward()
    opt.step()
    changed = {k for k, v in model.base.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.endswith("conv1.weight") for k in changed) and any("layer4" in k for k in changed)
    assert all(torch.equal(v, enc18.state_dict()[k]) for k, v in before.items())  # the input encoder is untouched
    save_adapter(model.freeze(), tmp_path / "ft")
    assert (tmp_path / "ft" / "base_encoder.safetensors").is_file()
    x = _images(seed=3)
    assert torch.equal(load_encoder(tmp_path / "ft")(x), model(x))
    with pytest.raises(HRAlignError, match="takes no options"):
        attach_adapter(enc18, "full", r=4)


def test_unsupported_combinations(enc18):
    with pytest.raises(HRAlignError, match="placement"):
        attach_adapter(enc18, "lora", placement="early")
    with pytest.raises(HRAlignError, match="placement"):
        attach_adapter(enc18, "bottleneck", placement="everywhere")
    with pytest.raises(HRAlignError, match="known: "):
        attach_adapter(enc18, "prefix-tuning")
    with pytest.raises(HRAlignError, match="stem"):
        attach_adapter(enc18, "lora", target=r"model\.conv1")


def test_vit_presets_are_anchored_and_round_trip(tmp_path):
    enc = _load("timm:vit_tiny_patch16_224", 32)
    late = attach_adapter(enc, "lora", placement="late", last_n=2)
    assert late.adapted_modules and all(n.startswith(("model.blocks.10.", "model.blocks.11.")) for n in late.adapted_modules)
    assert late.first_adapted_stage == "blocks.10"
    every = attach_adapter(enc, "ia3", placement="all")
    assert len(every.adapted_modules) == 4 * 12 and not any("patch_embed" in n for n in every.adapted_modules)
    tokens = attach_adapter(enc, "bottleneck")
    assert tokens.stage_names[-2:] == ["adapter.late", "head"]
    x = _images(2)
    assert torch.equal(tokens(x), enc(x))
    _perturb(late, seed=3)
    save_adapter(late, tmp_path / "vit")
    assert torch.equal(load_encoder(tmp_path / "vit")(x), late(x))
    with pytest.raises(HRAlignError, match="placement"):
        attach_adapter(enc, "bottleneck", placement="early")


@pytest.mark.parametrize("method, text, message", [
    ("lora", "{not json", "not valid JSON"),
    ("bottleneck", "[1, 2]", "holds a JSON list, expected the adapter's config object"),
    ("lora", None, "'r' is 64 but hralign.json's adapter has"),  # edited: PEFT would load another rank
    ("bottleneck", None, "'reduction' is 64 but hralign.json's adapter has"),
])
def test_adapter_config_must_parse_and_agree_with_hralign_json(enc18, tmp_path, method, text, message):
    import json

    from hralign.adapters.io import CONFIG_FILE

    save_adapter(attach_adapter(enc18, method), tmp_path / "ad")
    path = tmp_path / "ad" / CONFIG_FILE
    if text is None:
        config = json.loads(path.read_text())
        config["r" if method == "lora" else "reduction"] = 64
        text = json.dumps(config)
    path.write_text(text)
    with pytest.raises(HRAlignError, match=f"^{path}: .*{message}"):
        load_encoder(tmp_path / "ad")


def test_adapter_config_of_another_peft_version_loads(enc18, tmp_path):
    import json

    from hralign.adapters.io import CONFIG_FILE

    save_adapter(attach_adapter(enc18, "ia3"), tmp_path / "ad")  # feedforward_modules: a set, written as a list
    path = tmp_path / "ad" / CONFIG_FILE
    config = json.loads(path.read_text())
    config["peft_version"] = "0.13.0"
    del config["exclude_modules"]  # an option older PEFT versions did not write
    path.write_text(json.dumps(dict(reversed(config.items())), indent=4))
    assert load_encoder(tmp_path / "ad").adapter_method == "ia3"
