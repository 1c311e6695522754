"""LeRobot plug-in: the adapted ResNet inside ACT / Diffusion vision backbones.

The first tests build LeRobot's exact backbone layouts with torchvision alone (ACT:
IntermediateLayerGetter + FrozenBatchNorm2d; Diffusion: Sequential of the ResNet children), so the
weight mapping and the module swap are checked on every machine. The last test runs the real
``lerobot`` package and is skipped, with the reason, where it is not importable.
"""

from __future__ import annotations

import types

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

import hralign
from hralign.errors import HRAlignError
from hralign.integrations.lerobot import ResNetTrunk, install_encoder, torchvision_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::hralign.encoders.RandomInitWarning")


def _perturbed(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.freeze()


def _fake_act():
    resnet = torchvision.models.resnet18(weights=None, norm_layer=FrozenBatchNorm2d)
    model = nn.Module()
    model.backbone = IntermediateLayerGetter(resnet, return_layers={"layer4": "feature_map"})
    return types.SimpleNamespace(config=types.SimpleNamespace(vision_backbone="resnet18"), model=model)


def _fake_diffusion():
    resnet = torchvision.models.resnet18(weights=None)
    rgb = nn.Module()
    rgb.backbone = nn.Sequential(*list(resnet.children())[:-2])
    return types.SimpleNamespace(config=types.SimpleNamespace(vision_backbone="resnet18"),
                                 diffusion=types.SimpleNamespace(rgb_encoder=rgb))


def _x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_lora_is_merged_into_act_backbone_weights():
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    model = _perturbed(hralign.attach_adapter(enc, "lora"))
    policy = _fake_act()
    assert install_encoder(policy, model) == "weights"
    policy.model.backbone.eval()
    got = policy.model.backbone(_x())["feature_map"]
    want = model.forward_until(_x(), "head")
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, enc.forward_until(_x(), "head"), atol=1e-3)  # the adapter changed it
    assert not any(p.requires_grad for p in policy.model.backbone.parameters())
    assert "fc.weight" not in torchvision_state_dict(model)


def test_bottleneck_is_swapped_into_diffusion_backbone():
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    model = _perturbed(hralign.attach_adapter(enc, "bottleneck"))
    policy = _fake_diffusion()
    assert install_encoder(policy, model, train_backbone=True) == "module"
    trunk = policy.diffusion.rgb_encoder.backbone
    assert isinstance(trunk, ResNetTrunk)
    got = trunk(_x())
    assert torch.allclose(got, model.forward_until(_x(), "head"), atol=1e-5)
    trainable = {n for n, p in trunk.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters." in f".{n}" or n.startswith("encoder.adapters") for n in trainable)


def test_frozen_weights_route_keeps_batchnorm_statistics():
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    policy = _fake_diffusion()
    install_encoder(policy, enc)
    backbone = policy.diffusion.rgb_encoder.backbone
    backbone.train()
    x = _x() * 5 + 3
    first = backbone(x)
    assert torch.equal(first, backbone(x))  # train mode, yet statistics do not move
    assert torch.allclose(first, enc.forward_until(x, "head"), atol=1e-4)


def test_wrong_backbone_and_non_resnet_are_one_line_errors():
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    policy = _fake_act()
    policy.config.vision_backbone = "resnet50"
    with pytest.raises(HRAlignError, match="vision_backbone='resnet18'"):
        install_encoder(policy, enc)
    with pytest.raises(HRAlignError, match="no vision backbone"):
        install_encoder(nn.Linear(2, 2), enc)
    with pytest.raises(HRAlignError, match="use_group_norm=False"):
        p = _fake_diffusion()
        p.diffusion.rgb_encoder.backbone = torchvision.models.resnet18(
            norm_layer=lambda c: nn.GroupNorm(c // 16, c))
        p.diffusion.rgb_encoder.backbone = nn.Sequential(*list(p.diffusion.rgb_encoder.backbone.children())[:-2])
        install_encoder(p, enc)


def _lerobot():
    try:
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy
    except Exception as e:  # ImportError, or lerobot failing on this torch/transformers
        pytest.skip(f"lerobot not importable here ({type(e).__name__}: {str(e)[:120]}); lerobot 0.4.x pins "
                    "torch<2.11 and transformers<5, so it is not installed into this environment")
    return FeatureType, PolicyFeature, ACTConfig, ACTPolicy


def test_real_lerobot_act_with_adapted_backbone_trains_one_step():
    FeatureType, PolicyFeature, ACTConfig, ACTPolicy = _lerobot()
    torch.manual_seed(0)
    cfg = ACTConfig(
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (8,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        vision_backbone="resnet18", pretrained_backbone_weights=None, chunk_size=4, n_action_steps=4,
        dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, use_vae=False,
        device="cpu")
    policy = ACTPolicy(cfg)
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    adapted = _perturbed(hralign.attach_adapter(enc, "bottleneck"))
    assert install_encoder(policy, adapted) == "module"
    batch = {"observation.images.top": torch.rand(2, 3, 32, 32), "observation.state": torch.randn(2, 8),
             "action": torch.randn(2, 4, 4), "action_is_pad": torch.zeros(2, 4, dtype=torch.bool)}
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    policy.train()
    loss, logs = policy(batch)
    assert torch.isfinite(loss) and "l1_loss" in logs
    optim = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    loss.backward()
    optim.step()
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert changed and not any(n.startswith("model.backbone") for n in changed)  # backbone frozen, rest trains
    # the swapped backbone computes the adapted encoder's map
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(policy.model.backbone(x)["feature_map"], adapted.forward_until(x, "head"), atol=1e-5)
    policy.reset()
    action = policy.select_action({k: v[:1] for k, v in batch.items() if k.startswith("observation")})
    assert action.shape == (1, 4)


def test_real_lerobot_diffusion_with_merged_lora_backbone():
    FeatureType, PolicyFeature, _, _ = _lerobot()
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    torch.manual_seed(0)
    cfg = DiffusionConfig(
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 64, 64)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (8,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        vision_backbone="resnet18", pretrained_backbone_weights=None, use_group_norm=False, crop_shape=None,
        down_dims=(16, 32), horizon=8, n_action_steps=4, n_obs_steps=2, num_train_timesteps=10, device="cpu")
    policy = DiffusionPolicy(cfg)
    adapted = _perturbed(hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=64), "lora"))
    assert install_encoder(policy, adapted) == "weights"
    x = torch.rand(1, 3, 64, 64)
    policy.train()
    assert torch.allclose(policy.diffusion.rgb_encoder.backbone(x), adapted.forward_until(x, "head"), atol=1e-4)
    batch = {"observation.images.top": torch.rand(2, 2, 3, 64, 64), "observation.state": torch.randn(2, 2, 8),
             "action": torch.randn(2, 8, 4), "action_is_pad": torch.zeros(2, 8, dtype=torch.bool)}
    loss, _ = policy(batch)
    loss.backward()
    torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3).step()
    assert torch.isfinite(loss)
