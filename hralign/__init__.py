"""hralign: align visual encoders pretrained on human video to robot embodiments (HR-Align).

Public API (docs/design.md)::

    import hralign
    enc = hralign.load_encoder("r3m-resnet50", weights="model.pt")  # frozen, eval mode
    model = hralign.attach_adapter(enc, "bottleneck")
    hralign.save_adapter(model, "out/adapter")
    pairs = hralign.PairsFile("data.h5")

Names resolve on first use (PEP 562) so ``import hralign`` stays cheap for tools that only
read pairs files; the heavy torch/timm imports happen when an encoder is first asked for.
"""

from __future__ import annotations

import importlib

from hralign.errors import HRAlignError

__version__ = "0.1.0"

_LAZY = {
    "PairsFile": "hralign.pairs",
    "PairsWriter": "hralign.pairs",
    "load_encoder": "hralign.encoders",
    "attach_adapter": "hralign.adapters",
    "save_adapter": "hralign.adapters",
}

__all__ = ["HRAlignError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hralign' has no attribute {name!r}")
