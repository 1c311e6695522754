"""LeRobot plug-in: the adapted ResNet inside ACT / Diffusion vision backbones.

The first tests build LeRobot's exact backbone layouts with torchvision alone (ACT:
IntermediateLayerGetter + FrozenBatchNorm2d; Diffusion: Sequential of the ResNet children), so the
weight mapping and the module swap are checked on every machine (the fast tests). The ``real_``
tests run the real ``lerobot`` package (ACTPolicy / DiffusionPolicy from their own config classes),
installed by ``make install`` as its wheel without dependencies plus the few modules its policy code
imports (docs/policy.md has the command); they are skipped, with the reason, only where it is absent.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
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
    """(FeatureType, PolicyFeature) of the real lerobot, its policy package made importable.

    ``lerobot/policies/__init__.py`` eagerly imports all eleven policies; GR00T's model module declares a
    dataclass that transformers 5 (hralign's) rejects ("non-default argument 'backbone_cfg' follows default
    argument"), so ``import lerobot.policies`` fails before ACT or Diffusion are reached. We register the
    package without running that aggregator (a module with the real ``__path__``): ACT's and Diffusion's own
    files then import and run unmodified. Nothing of lerobot is patched or copied.
    """
    spec = importlib.util.find_spec("lerobot")
    if spec is None:
        pytest.skip("lerobot is not installed (make install adds it; docs/policy.md has the command)")
    if "lerobot.policies" not in sys.modules:
        import lerobot  # noqa: F401  (the parent package must exist before its child is registered)

        where = os.path.join(os.path.dirname(spec.origin), "policies")
        pkg = types.ModuleType("lerobot.policies")
        pkg.__path__ = [where]
        pkg.__spec__ = importlib.machinery.ModuleSpec("lerobot.policies", None, is_package=True)
        pkg.__spec__.submodule_search_locations = [where]
        sys.modules["lerobot.policies"] = pkg
    from lerobot.configs.types import FeatureType, PolicyFeature

    return FeatureType, PolicyFeature


class _Calls:
    """Counts forward calls of a module (proof that the installed hralign module is what runs)."""

    def __init__(self, module: nn.Module) -> None:
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


def _act(FeatureType, PolicyFeature):
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    cfg = ACTConfig(
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (8,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        vision_backbone="resnet18", pretrained_backbone_weights=None, chunk_size=4, n_action_steps=4,
        dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, use_vae=False,
        device="cpu")
    return ACTPolicy(cfg)


def _diffusion(FeatureType, PolicyFeature):
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    cfg = DiffusionConfig(
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 64, 64)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (8,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        vision_backbone="resnet18", pretrained_backbone_weights=None, use_group_norm=False, crop_shape=None,
        down_dims=(16, 32), horizon=8, n_action_steps=4, n_obs_steps=2, num_train_timesteps=10, device="cpu")
    return DiffusionPolicy(cfg)


_ACT_BATCH = {"observation.images.top": (2, 3, 32, 32), "observation.state": (2, 8), "action": (2, 4, 4)}
_DIFF_BATCH = {"observation.images.top": (2, 2, 3, 64, 64), "observation.state": (2, 2, 8), "action": (2, 8, 4)}


def _batch(shapes):
    g = torch.Generator().manual_seed(2)
    out = {k: (torch.rand if "images" in k else torch.randn)(s, generator=g) for k, s in shapes.items()}
    out["action_is_pad"] = torch.zeros(shapes["action"][:2], dtype=torch.bool)
    return out


def _one_step(policy, batch):
    """One LeRobot training step (forward -> loss, backward, AdamW); returns (loss, names of params that moved)."""
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    policy.train()
    loss, _ = policy(batch)
    loss.backward()
    torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3).step()
    return loss, [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]


def test_real_lerobot_act_runs_swapped_bottleneck_encoder_and_trains_its_adapter():
    FeatureType, PolicyFeature = _lerobot()
    torch.manual_seed(0)
    policy = _act(FeatureType, PolicyFeature)
    adapted = _perturbed(hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=32), "bottleneck"))
    assert install_encoder(policy, adapted, train_backbone=True) == "module"
    trunk = policy.model.backbone
    assert isinstance(trunk, ResNetTrunk)
    calls = _Calls(trunk)
    loss, changed = _one_step(policy, _batch(_ACT_BATCH))
    assert torch.isfinite(loss) and calls.n >= 1  # ACT's forward ran hralign's trunk
    moved = [n for n in changed if n.startswith("model.backbone.")]
    assert moved and all(".adapters." in n for n in moved)  # the adapter learns, the frozen base does not
    assert any(not n.startswith("model.backbone.") for n in changed)  # and ACT's own layers train too
    x = torch.rand(1, 3, 32, 32)
    trunk.eval()
    assert torch.allclose(trunk(x)["feature_map"], trunk.encoder.forward_until(x, "head"), atol=1e-6)
    policy.eval()
    policy.reset()
    n = calls.n
    action = policy.select_action({k: v[:1] for k, v in _batch(_ACT_BATCH).items() if k.startswith("observation")})
    assert action.shape == (1, 4) and calls.n == n + 1


def test_real_lerobot_act_with_merged_lora_weights_computes_the_adapted_map():
    FeatureType, PolicyFeature = _lerobot()
    torch.manual_seed(0)
    policy = _act(FeatureType, PolicyFeature)
    enc = hralign.load_encoder("r3m-resnet18", image_size=32)
    adapted = _perturbed(hralign.attach_adapter(enc, "lora"))
    assert install_encoder(policy, adapted) == "weights"
    x = torch.rand(2, 3, 32, 32)
    got = policy.model.backbone(x)["feature_map"]
    assert torch.allclose(got, adapted.forward_until(x, "head"), atol=1e-4)
    assert not torch.allclose(got, enc.forward_until(x, "head"), atol=1e-3)  # the adapter's weights are in
    loss, changed = _one_step(policy, _batch(_ACT_BATCH))
    assert torch.isfinite(loss) and changed and not any(n.startswith("model.backbone") for n in changed)
    assert torch.equal(policy.model.backbone(x)["feature_map"], got)  # frozen (FrozenBatchNorm2d) after a step


def test_real_lerobot_diffusion_with_merged_lora_backbone():
    FeatureType, PolicyFeature = _lerobot()
    torch.manual_seed(0)
    policy = _diffusion(FeatureType, PolicyFeature)
    adapted = _perturbed(hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=64), "lora"))
    assert install_encoder(policy, adapted) == "weights"
    x = torch.rand(1, 3, 64, 64)
    policy.train()
    assert torch.allclose(policy.diffusion.rgb_encoder.backbone(x), adapted.forward_until(x, "head"), atol=1e-4)
    loss, changed = _one_step(policy, _batch(_DIFF_BATCH))
    assert torch.isfinite(loss) and changed and not any(".backbone." in n for n in changed)


def test_real_lerobot_diffusion_runs_swapped_bottleneck_encoder():
    FeatureType, PolicyFeature = _lerobot()
    torch.manual_seed(0)
    policy = _diffusion(FeatureType, PolicyFeature)
    adapted = _perturbed(hralign.attach_adapter(hralign.load_encoder("r3m-resnet18", image_size=64), "bottleneck"))
    assert install_encoder(policy, adapted, train_backbone=True) == "module"
    trunk = policy.diffusion.rgb_encoder.backbone
    calls = _Calls(trunk)
    loss, changed = _one_step(policy, _batch(_DIFF_BATCH))
    assert torch.isfinite(loss) and calls.n >= 1
    moved = [n for n in changed if ".backbone." in n]
    assert moved and all(".adapters." in n for n in moved)
