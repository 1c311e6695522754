"""Target presets for PEFT methods, per encoder family, as ANCHORED regular expressions.

PEFT matches a string ``target_modules`` with ``re.fullmatch`` against module names; we also
anchor with ``^...$`` so a pattern read out of context cannot be mistaken for a substring
match. Only residual-block layers are targeted: the stem ``model.conv1`` and the ViT
``model.patch_embed.proj`` are never hit by a preset (checked again after injection).
"""

from __future__ import annotations

from hralign.errors import HRAlignError

RESNET_PRESETS = {
    "late": r"^model\.layer4\.\d+\.conv\d$",
    "middle": r"^model\.layer3\.\d+\.conv\d$",
    "all": r"^model\.layer[1-4]\.\d+\.conv\d$",
}
VIT_LAYERS = r"(?:attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
VIT_FEEDFORWARD = r"mlp\.fc2"
STEM_MODULES = ("model.conv1", "model.patch_embed.proj")


def _blocks(indices: list[int], layers: str) -> str:
    return r"^model\.blocks\.(?:" + "|".join(str(i) for i in indices) + r")\." + layers + "$"


def vit_blocks(placement: str, depth: int, last_n: int) -> list[int]:
    """Block indices of a ViT preset: ``late`` = last ``last_n``; ``middle`` = the middle third; ``all``."""
    if placement == "late":
        return list(range(max(0, depth - last_n), depth))
    if placement == "middle":
        return list(range(depth // 3, (2 * depth) // 3))
    return list(range(depth))


def preset_targets(family: str | None, placement: str, depth: int = 0, last_n: int = 4) -> tuple[str, str | None]:
    """(target_modules, feedforward_modules for IA3) of a preset; HRAlignError for unknown combinations."""
    if family == "resnet":
        if placement not in RESNET_PRESETS:
            raise HRAlignError(
                f"`placement` {placement!r} is not a PEFT preset for ResNets; expected one of {', '.join(RESNET_PRESETS)}"
            )
        return RESNET_PRESETS[placement], None
    if family == "vit":
        if placement not in ("late", "middle", "all"):
            raise HRAlignError(f"`placement` {placement!r} is not a PEFT preset for ViTs; expected late, middle or all")
        if not isinstance(last_n, int) or not 1 <= last_n <= depth:
            raise HRAlignError(f"`last_n` should be an integer in [1, {depth}] but the value passed is {last_n!r}")
        blocks = vit_blocks(placement, depth, last_n)
        return _blocks(blocks, VIT_LAYERS), _blocks(blocks, VIT_FEEDFORWARD)
    raise HRAlignError(
        f"this encoder family has no PEFT presets (placement {placement!r}); pass `target` as an anchored regex of module names"
    )
