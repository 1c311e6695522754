"""Resolve ``--encoder`` / ``--weights`` / ``--adapter`` into the frozen and adapted encoders.

The frozen view must use the very encoder the adapter was trained on: with both options the
``--encoder`` spec is compared to the base encoder recorded in the adapter's ``hralign.json``
(name; weights checksum when either side has weights; image size when ``--image-size`` is given),
and any difference is a user error that lists what differs.
"""

from __future__ import annotations

from typing import Any

from hralign.adapters import read_adapter_meta
from hralign.analysis.config import AnalyzeConfig
from hralign.encoders import Encoder, build_from_spec, load_encoder
from hralign.errors import HRAlignError


def spec_differences(given: dict[str, Any], recorded: dict[str, Any], check_image_size: bool) -> list[str]:
    """Human-readable differences between the --encoder spec and the adapter's base spec."""
    diffs = []
    if given.get("name") != recorded.get("name"):
        diffs.append(f"name {given.get('name')!r} vs adapter base {recorded.get('name')!r}")
    g_sha, r_sha = given.get("sha256"), recorded.get("sha256")
    if (g_sha or r_sha) and g_sha != r_sha:
        short = lambda s: f"sha256 {s[:12]}..." if s else "random init (no weights)"  # noqa: E731
        diffs.append(f"weights {short(g_sha)} vs adapter base {short(r_sha)}")
    if check_image_size and given.get("image_size") != recorded.get("image_size"):
        diffs.append(f"image size {given.get('image_size')} vs adapter base {recorded.get('image_size')}")
    return diffs


def load_models(config: AnalyzeConfig) -> tuple[Encoder, Encoder | None, dict[str, str]]:
    """(frozen encoder, adapted encoder or None, info lines for the report)."""
    adapted = None
    info: dict[str, str] = {}
    base_spec = None
    if config.adapter:
        meta = read_adapter_meta(config.adapter)
        base_spec = meta.get("encoder")
        if not isinstance(base_spec, dict) or "name" not in base_spec:
            raise HRAlignError(f"--adapter {config.adapter}: hralign.json records no base encoder spec ('encoder')")
        adapted = load_encoder(config.adapter, image_size=config.image_size)
        info["adapter method"] = str(meta.get("method", getattr(adapted, "adapter_method", "?")))
    if config.encoder:
        frozen = load_encoder(config.encoder, weights=config.weights, image_size=config.image_size,
                              trust_checkpoint=config.trust_checkpoint)
        if base_spec is not None:
            diffs = spec_differences(frozen.spec, base_spec, check_image_size=config.image_size is not None)
            if diffs:
                raise HRAlignError(f"--encoder {config.encoder} does not match the base encoder of --adapter "
                                   f"{config.adapter}: " + "; ".join(diffs))
    else:
        if config.weights:
            raise HRAlignError("--weights needs --encoder (the adapter records its own base weights)")
        spec = dict(base_spec)  # type: ignore[arg-type]
        if config.image_size is not None:
            spec["image_size"] = config.image_size
        frozen = build_from_spec(spec)
    if adapted is not None and adapted.image_size != frozen.image_size:
        raise HRAlignError(f"image size of the adapted encoder ({adapted.image_size}) differs from the frozen one "
                           f"({frozen.image_size}); pass --image-size")
    return frozen, adapted, info
