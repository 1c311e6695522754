"""``attach_adapter``: a NEW encoder (same contract) whose only trainable parameters are the adapter's.

The input encoder is deep-copied and stays untouched and frozen. Bottleneck adapters become
their own stage (``adapter.late`` ...), so a trainer can cache ``forward_until(x, "adapter.late")``
from the frozen encoder; PEFT methods live inside the backbone's layers and
``first_adapted_stage`` names the earliest stage that holds them.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from torch import nn

from hralign.adapters.bottleneck import BottleneckConfig, make_stack
from hralign.adapters.peft_methods import ADAPTER_PREFIXES, PEFT_CONFIGS, inject, make_peft_config
from hralign.encoders.base import Encoder, Stage
from hralign.errors import HRAlignError


class AdaptedEncoder(Encoder):
    """A frozen base encoder plus a trainable adapter; ``forward(images) -> [B, D]`` as the base."""

    def __init__(self, base: Encoder, method: str, options: dict[str, Any]) -> None:
        super().__init__(base.name, base.feature_dim, base.image_size)
        self.base = base
        self.adapter_method = method
        self.adapter_options = dict(options)
        self.adapters = nn.ModuleDict()
        self._inserted: dict[str, str] = {}  # base stage -> inserted adapter stage name
        self.adapter_config: dict[str, Any] = {}
        self.placement = ""
        self.peft_config = None
        self.adapted_modules: list[str] = []
        self._spec = {**base.spec, "adapter": method}

    # the base owns preprocessing (its own resize + normalisation)
    def preprocess(self, images):  # type: ignore[override]
        return self.base.preprocess(images)

    @property
    def family(self) -> str | None:  # type: ignore[override]
        return self.base.family

    def stages(self) -> list[Stage]:
        out: list[Stage] = []
        for name, fn in self.base.stages():
            out.append((name, fn))
            if name in self._inserted:
                key = self._inserted[name]
                out.append((f"adapter.{key}", self.adapters[key]))
        return out

    def stage_modules(self) -> dict[str, list[str]]:
        mods = {k: [f"base.{p}" for p in v] for k, v in self.base.stage_modules().items()}
        mods.update({f"adapter.{k}": [f"adapters.{k}"] for k in self.adapters})
        return mods

    def backbone(self) -> nn.Module:
        return self.base.backbone()

    @property
    def first_adapted_stage(self) -> str:
        """Earliest stage holding adapter parameters; everything below is the frozen encoder's."""
        names = [n for n, _ in self.named_parameters() if _is_adapter_param(n)]
        mods = self.stage_modules()
        for stage in self.stage_names:
            prefixes = mods.get(stage)
            if prefixes is None:  # unknown layout: be conservative
                return self.stage_names[0]
            if any(n == p or n.startswith(p + ".") for n in names for p in prefixes):
                return stage
        return self.stage_names[0]

    def train(self, mode: bool = True) -> "AdaptedEncoder":
        # nn.Module.train recurses; the frozen base forces itself (and its BatchNorms) to eval.
        super().train(mode)
        if not self._frozen:
            for name, module in self.base.named_modules():
                if any(part.startswith(ADAPTER_PREFIXES) for part in name.split(".")):
                    module.train(mode)  # PEFT dropout etc. inside the frozen backbone
        return self

    def freeze(self) -> "AdaptedEncoder":
        super().freeze()
        return self

    def set_trainable(self, flag: bool = True) -> "AdaptedEncoder":
        """Adapter parameters trainable (``True``) or everything frozen (``False``); the base stays frozen."""
        if not flag:
            return self.freeze()
        self._frozen = False
        if self.adapter_method == FULL:
            self.base.set_trainable(True)  # every weight of the robot branch (marks them modified for saving)
            return self
        for n, p in self.named_parameters():
            p.requires_grad_(_is_adapter_param(n))
        return self


def _is_adapter_param(name: str) -> bool:
    return name.startswith("adapters.") or any(part.startswith(ADAPTER_PREFIXES) for part in name.split("."))


def _attach_bottleneck(model: AdaptedEncoder, options: dict[str, Any]) -> None:
    try:
        config = BottleneckConfig(**options)
    except TypeError as e:
        raise HRAlignError(f"adapter bottleneck: invalid options {sorted(options)} ({e})") from e
    sites = model.base.adapter_sites()
    if config.placement not in sites:
        raise HRAlignError(
            f"adapter bottleneck: placement {config.placement!r} is not supported for {model.base.name}; "
            f"supported: {', '.join(sites) or 'none'}"
        )
    after, kind, width = sites[config.placement]
    model.adapters[config.placement] = make_stack(kind, width, config)
    model._inserted[after] = config.placement
    model.adapter_config = {"peft_type": "HRALIGN_BOTTLENECK", "method": "bottleneck", **config.to_dict()}
    model.placement = config.placement


def _attach_peft(model: AdaptedEncoder, options: dict[str, Any]) -> None:
    config, placement = make_peft_config(model.adapter_method, model.base, options)
    model.adapted_modules = inject(config, model.base)
    model.peft_config = config
    model.adapter_config = config.to_dict()
    model.placement = placement


FULL = "full"


def _attach_full(model: AdaptedEncoder, options: dict[str, Any]) -> None:
    """Full fine-tune, HR-Align's strongest baseline: no adapter module, every robot-branch weight trains.

    The trained weights are saved as ``base_encoder.safetensors`` beside an empty adapter file, so
    the directory loads like any other adapter and the human branch keeps the untouched encoder.
    """
    extra = sorted(k for k in options if k != "placement" or options[k] not in ("all", None))
    if extra:
        raise HRAlignError(f"adapter full: takes no options (fine-tunes every weight), got {extra}")
    model.adapter_config = {"peft_type": "HRALIGN_FULL", "method": FULL}
    model.placement = "all"


# method -> function that installs it on a fresh AdaptedEncoder (plain-dict registry)
METHODS: dict[str, Callable[[AdaptedEncoder, dict[str, Any]], None]] = {}


def register_method(name: str, attach: Callable[[AdaptedEncoder, dict[str, Any]], None]) -> None:
    """Register an adapter method; duplicates are an error."""
    if name in METHODS:
        raise HRAlignError(f"adapter method {name!r} is already registered")
    METHODS[name] = attach


register_method("bottleneck", _attach_bottleneck)
register_method(FULL, _attach_full)
for _m in PEFT_CONFIGS:
    register_method(_m, _attach_peft)


def attach_adapter(encoder: Encoder, method: str = "bottleneck", **options: Any) -> AdaptedEncoder:
    """Return a new encoder with a trainable adapter; ``encoder`` itself stays untouched and frozen.

    Parameters
    ----------
    encoder : Encoder
        A (frozen) encoder from :func:`hralign.load_encoder`.
    method : {"bottleneck", "lora", "loha", "lokr", "ia3", "full"}
        ``bottleneck`` is HR-Align's residual adapter (Options: placement, num_adapters,
        reduction, groups, zero_init); PEFT methods take placement (late/middle/all preset) or
        target (anchored regex), last_n (ViTs), and the method's own options (r, alpha, ...).
        ``full`` trains every weight of the copy (the full fine-tune baseline).
    """
    if not isinstance(encoder, Encoder):
        raise HRAlignError(f"attach_adapter: expected an hralign Encoder, got {type(encoder).__name__}")
    if isinstance(encoder, AdaptedEncoder):
        raise HRAlignError("attach_adapter: this encoder already has an adapter; stacking adapters is not supported")
    if method not in METHODS:
        raise HRAlignError(f"unknown adapter method {method!r}; known: {', '.join(sorted(METHODS))}")
    base = copy.deepcopy(encoder).freeze()
    model = AdaptedEncoder(base, method, options)
    METHODS[method](model, dict(options))
    model.set_trainable(True)
    model.train(encoder.training)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (the adapter's, for an adapted encoder)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def backbone_parameters(model: nn.Module) -> int:
    """Parameters of the frozen backbone (adapter parameters excluded)."""
    if isinstance(model, AdaptedEncoder):
        return sum(p.numel() for n, p in model.named_parameters() if not _is_adapter_param(n))
    return sum(p.numel() for p in model.parameters())
