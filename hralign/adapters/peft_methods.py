"""PEFT methods (LoRA, LoHa, LoKr, IA3) injected into an encoder through the ``peft`` library.

We do not re-implement any PEFT layer: ``peft.inject_adapter_in_model`` wraps the targeted
Conv2d/Linear modules in place, ``get_peft_model_state_dict`` / ``set_peft_model_state_dict``
move the weights, and the saved directory is the one ``peft.PeftModel.save_pretrained`` writes
(keys prefixed ``base_model.model.``), so ``PeftModel.from_pretrained(base_encoder, dir)``
works on the rebuilt encoder.
"""

from __future__ import annotations

from typing import Any

import peft
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from hralign.adapters.targets import STEM_MODULES, preset_targets
from hralign.errors import HRAlignError

PEFT_CONFIGS = {"lora": peft.LoraConfig, "loha": peft.LoHaConfig, "lokr": peft.LoKrConfig, "ia3": peft.IA3Config}
# hralign option name -> PEFT config field, per method (PEFT's own names are accepted too)
_ALIASES = {
    "lora": {"alpha": "lora_alpha", "dropout": "lora_dropout"},
    "loha": {},
    "lokr": {},
    "ia3": {},
}
_DEFAULTS = {
    "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
    "loha": {"r": 8, "alpha": 16},
    "lokr": {"r": 8, "alpha": 16},
    "ia3": {},
}
ADAPTER_PREFIXES = ("lora_", "hada_", "lokr_", "ia3_")
SAVE_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before module names


def make_peft_config(method: str, encoder: nn.Module, options: dict[str, Any]) -> tuple[Any, str]:
    """Build the PEFT config for ``method`` from hralign options; returns (config, placement label)."""
    opts = dict(options)
    placement = opts.pop("placement", "late")
    target = opts.pop("target", None)
    last_n = opts.pop("last_n", 4)
    if target is None:
        depth = int(getattr(encoder, "depth", 0))
        target, feedforward = preset_targets(getattr(encoder, "family", None), placement, depth, last_n)
    else:
        if not isinstance(target, str) or not target:
            raise HRAlignError(f"`target` should be a regular expression string but the value passed is {target!r}")
        placement = "custom"
        feedforward = None
    kwargs: dict[str, Any] = dict(_DEFAULTS[method])
    for key, value in opts.items():
        kwargs[_ALIASES[method].get(key, key)] = value
    kwargs["target_modules"] = target
    if method == "ia3":
        # IA3 scales the input of "feedforward" layers, the output of the others; ResNets: outputs only.
        kwargs.setdefault("feedforward_modules", feedforward if feedforward is not None else [])
    try:
        config = PEFT_CONFIGS[method](**kwargs)
    except (TypeError, ValueError) as e:
        raise HRAlignError(f"adapter {method}: invalid options {sorted(options)} ({str(e).splitlines()[0]})") from e
    return config, placement


def inject(config: Any, model: nn.Module) -> list[str]:
    """Inject PEFT layers into ``model`` in place; returns the adapted module names."""
    try:
        peft.inject_adapter_in_model(config, model, adapter_name="default")
    except ValueError as e:
        raise HRAlignError(
            f"adapter {_method(config)}: cannot inject with target {config.target_modules!r} "
            f"({str(e).splitlines()[0][:160]})"
        ) from e
    names = [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    hit = [n for n in names if n in STEM_MODULES]
    if hit:
        raise HRAlignError(
            f"adapter target {config.target_modules!r} hits the stem ({', '.join(hit)}); anchor it to block layers"
        )
    return names


def peft_state(model: nn.Module) -> dict[str, Any]:
    """Adapter weights in PEFT's saved layout (``base_model.model.<module>.lora_A.weight``...)."""
    return {SAVE_PREFIX + k: v for k, v in peft.get_peft_model_state_dict(model, adapter_name="default").items()}


def set_peft_state(model: nn.Module, state: dict[str, Any]) -> None:
    """Inverse of :func:`peft_state`; the caller has checked keys and shapes."""
    stripped = {k[len(SAVE_PREFIX):] if k.startswith(SAVE_PREFIX) else k: v for k, v in state.items()}
    peft.set_peft_model_state_dict(model, stripped, adapter_name="default")


def _method(config: Any) -> str:
    return str(getattr(config.peft_type, "value", config.peft_type)).lower()
