"""Official checkpoint layouts written from random-init reference models load through hralign and match.

R3M (``{"r3m": {"module.convnet.*", "module.lang_enc.*", "module.lang_rew.*"}}``), D4R MAE ViT
(decoder keys, mask token, a different pos_embed size), D4R GroupNorm ResNet-18 (``_model.``),
timm and transformers models: hralign's output on the same uint8 images equals the reference
model's to 1e-5.
"""

from __future__ import annotations

import argparse
import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn

from hralign.encoders import RandomInitWarning, load_encoder
from hralign.errors import HRAlignError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(n=2, size=32, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def _normalised(x, mean=MEAN, std=STD):
    return (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BatchNorm statistics, so a loader that skips buffers would be caught."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _r3m_checkpoint(arch: str, path, seed: int = 11):
    torch.manual_seed(seed)
    ref = getattr(torchvision.models, arch)(weights=None)
    ref.fc = nn.Identity()
    _randomise_bn(ref)
    ref.eval()
    state = {f"module.convnet.{k}": v for k, v in ref.state_dict().items()}
    # R3M's language heads live in the same dict and must be ignored
    state["module.lang_enc.model.embeddings.word_embeddings.weight"] = torch.randn(10, 8)
    state["module.lang_rew.0.weight"] = torch.randn(1024, 2048 + 768)
    state["module.lang_rew.0.bias"] = torch.randn(1024)
    torch.save({"r3m": state}, path)
    return ref


@pytest.mark.parametrize("size", [18, 50])
def test_r3m_checkpoint_matches_reference(tmp_path, size):
    path = tmp_path / "model.pt"
    ref = _r3m_checkpoint(f"resnet{size}", path)
    enc = load_encoder(f"r3m-resnet{size}", weights=path, image_size=32)
    x = _images()
    with torch.no_grad():
        expected = ref(_normalised(x))
    assert torch.allclose(enc(x), expected, atol=1e-5)
    assert enc.spec["weights"] == str(path.resolve()) and len(enc.spec["sha256"]) == 64


def test_d4r_vit_mae_checkpoint_with_decoder_and_other_pos_embed(tmp_path):
    torch.manual_seed(5)
    src = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, img_size=64, global_pool="token")
    state = dict(src.state_dict())
    state["mask_token"] = torch.randn(1, 1, 512)
    state["decoder_embed.weight"] = torch.randn(512, 768)
    state["decoder_pos_embed"] = torch.randn(1, 17, 512)
    torch.save({"model": state}, tmp_path / "mae.pth")
    enc = load_encoder("d4r-vit-b16", weights=tmp_path / "mae.pth", image_size=32)  # pos_embed 17 -> 5 tokens
    # reference: timm's own checkpoint filter resizes pos_embed for a 32 px model
    from timm.models.vision_transformer import checkpoint_filter_fn

    ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, img_size=32, global_pool="token")
    clean = {k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))}
    ref.load_state_dict(checkpoint_filter_fn(clean, ref))
    ref.eval()
    x = _images(size=32)
    with torch.no_grad():
        expected = ref(_normalised(x))
    assert enc.feature_dim == 768 and enc.model.pos_embed.shape[1] == 5
    assert torch.allclose(enc(x), expected, atol=1e-5)


def test_d4r_resnet18_groupnorm_checkpoint(tmp_path):
    torch.manual_seed(7)
    ref = torchvision.models.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(16, c))
    with torch.no_grad():  # non-trivial GroupNorm affine parameters
        for m in ref.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ref.fc = nn.Identity()
    ref.eval()
    torch.save({f"_model.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "gn.pth")
    enc = load_encoder("d4r-resnet18-gn", weights=tmp_path / "gn.pth", image_size=32)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(enc(x), ref(_normalised(x)), atol=1e-5)


def test_timm_state_dict_with_classifier(tmp_path):
    torch.manual_seed(9)
    ref = timm.create_model("resnet18", pretrained=False)  # with its fc classifier
    _randomise_bn(ref)
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    enc = load_encoder("timm:resnet18", weights=tmp_path / "timm.pth", image_size=32)
    x = _images()
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(_normalised(x)), pre_logits=True)
    assert enc.feature_dim == 512 and torch.allclose(enc(x), expected, atol=1e-5)


def test_hf_local_directory(tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(4)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    ref = ViTModel(cfg, add_pooling_layer=False).eval()
    ref.save_pretrained(tmp_path / "vit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)  # weights are in the directory: no warning
        enc = load_encoder(f"hf:{tmp_path / 'vit'}")
    x = _images()
    with torch.no_grad():
        expected = ref(pixel_values=_normalised(x)).last_hidden_state[:, 0]
    assert enc.image_size == 32 and enc.feature_dim == 32
    assert torch.allclose(enc(x), expected, atol=1e-5)


def test_wrong_architecture_names_first_keys(tmp_path):
    _r3m_checkpoint("resnet18", tmp_path / "model.pt")
    with pytest.raises(HRAlignError) as info:
        load_encoder("r3m-resnet50", weights=tmp_path / "model.pt", image_size=32)
    msg = str(info.value)
    assert "\n" not in msg and "wrong shape" in msg and "missing" in msg and "(+" in msg


def test_weights_only_refusal_and_trust_opt_in(tmp_path):
    ref = _r3m_checkpoint("resnet18", tmp_path / "plain.pt")
    obj = torch.load(tmp_path / "plain.pt", weights_only=True)
    obj["args"] = argparse.Namespace(lr=1e-4)  # arbitrary pickled object: weights_only refuses it
    torch.save(obj, tmp_path / "pickled.pt")
    with pytest.raises(HRAlignError, match="--trust-checkpoint"):
        load_encoder("r3m-resnet18", weights=tmp_path / "pickled.pt", image_size=32)
    enc = load_encoder("r3m-resnet18", weights=tmp_path / "pickled.pt", image_size=32, trust_checkpoint=True)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(enc(x), ref(_normalised(x)), atol=1e-5)


def test_missing_weights_says_where_and_no_download(tmp_path):
    with pytest.raises(HRAlignError, match=r"~/.r3m/r3m_50/model.pt.*never downloads"):
        load_encoder("r3m-resnet50", weights=tmp_path / "nope.pt")
    with pytest.raises(HRAlignError, match="visual_features"):
        load_encoder("d4r-resnet18-gn", weights=tmp_path / "nope.pth")


def test_checksum_guards_rebuild(tmp_path):
    _r3m_checkpoint("resnet18", tmp_path / "model.pt")
    enc = load_encoder("r3m-resnet18", weights=tmp_path / "model.pt", image_size=32)
    _r3m_checkpoint("resnet18", tmp_path / "model.pt", seed=12)  # file replaced in place
    from hralign.encoders import build_from_spec

    with pytest.raises(HRAlignError, match="sha256"):
        build_from_spec(enc.spec)
