"""The paired-clip format: schema, writer, lazy reader, validation, datasets, synthetic demo data.

``PairsDataset`` resolves on first use (PEP 562) because it imports torch, which tools that only
validate or inspect a file (``hralign pairs validate``) should not pay for.
"""

from __future__ import annotations

import importlib

from hralign.pairs.reader import PairsFile, open_h5_readonly
from hralign.pairs.writer import PairsWriter

_LAZY = {
    "PairsDataset": "hralign.pairs.dataset",
    "split_pairs": "hralign.pairs.split",
    "validate": "hralign.pairs.validate",
    "SynthConfig": "hralign.pairs.synth",
    "synthesize": "hralign.pairs.synth",
    "build_from_manifest": "hralign.pairs.build",
    "pairs_info": "hralign.pairs.info",
}

__all__ = ["PairsFile", "PairsWriter", "open_h5_readonly", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hralign.pairs' has no attribute {name!r}")
