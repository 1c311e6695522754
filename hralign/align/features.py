"""The three HR-Align branches, computed either plainly each step or from a feature cache.

Plain path: every step runs the frozen encoder on the human and robot frames and the adapted
encoder on the robot frames. Cached path (augmentation off): frozen per-frame features of both
domains, and the robot trunk activations below the first adapted stage, are computed once; a
step then runs only the adapted top of the network. Below the first adapted stage the adapted
and frozen networks are the same function, so both paths give the same loss (tested to 1e-4).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hralign.align.pooling import FramePooling
from hralign.atomic import atomic_path
from hralign.device import Placement
from hralign.encoders.clips import encode_clips, shard_clips, unit_counts
from hralign.hashing import sha256_text
from hralign.pairs import PairsFile
from hralign.shard import Shard, gather_parts

CACHE_VERSION = 1


def read_units(pairs: PairsFile, domain: str, clip: int, idx: np.ndarray, gap: int) -> np.ndarray:
    """Encoder inputs of one clip at unit indices (T,): frames (T, H, W, 3), or with ``gap`` > 0
    frame pairs (T, 2, H, W, 3) = (x_t, x_{t+gap}) for latent action models."""
    if gap == 0:
        return pairs.read_clip(domain, clip, idx)
    both = pairs.read_clip(domain, clip, np.concatenate([idx, idx + gap]))  # (2T, H, W, 3)
    return both.reshape(2, len(idx), *both.shape[1:]).swapaxes(0, 1)


class AlignModel(nn.Module):
    """Frozen human, frozen robot and adapted robot branches followed by frame pooling.

    ``forward(batch) -> (h, r, a)``, each (B, D). ``batch`` holds either uint8 frames
    (``human``/``robot``: (B, T, H, W, 3), or float crops (B, T, 3, S, S)) or cached tensors
    (``human_feat``/``robot_feat``: (B, T, D), ``robot_trunk``: (B, T, ...)); ``text`` (B, E)
    is the instruction embedding for attention pooling. ``with_frames=True`` also returns the
    unpooled human, frozen-robot and adapted frame features (B, T, D) for the per-frame term.
    """

    def __init__(self, frozen: nn.Module, adapted: nn.Module, pooling: FramePooling, stage: str | None) -> None:
        super().__init__()
        self.frozen = frozen
        self.adapted = adapted
        self.pooling = pooling
        self.stage = stage

    def forward(self, batch: dict[str, torch.Tensor], with_frames: bool = False) -> tuple[torch.Tensor, ...]:
        text = batch.get("text")
        if "robot_trunk" in batch:
            trunk = batch["robot_trunk"]  # (B, T, ...)
            b, t = trunk.shape[:2]
            h_frames, r_frames = batch["human_feat"], batch["robot_feat"]  # (B, T, D)
            a_frames = self.adapted.forward_from(trunk.flatten(0, 1), self.stage).view(b, t, -1)
        else:
            human, robot = batch["human"], batch["robot"]
            b, t = robot.shape[:2]
            with torch.no_grad():
                h_frames = self.frozen(human.flatten(0, 1)).view(b, t, -1)
                r_frames = self.frozen(robot.flatten(0, 1)).view(b, t, -1)
            a_frames = self.adapted(robot.flatten(0, 1)).view(b, t, -1)
        pooled = self.pooling(h_frames, text), self.pooling(r_frames, text), self.pooling(a_frames, text)
        return (*pooled, h_frames, r_frames, a_frames) if with_frames else pooled


@dataclass
class FeatureCache:
    """Per-frame frozen features of the clips a run uses, indexed by (clip, frame)."""

    human_feat: torch.Tensor  # (N_h, D)
    robot_feat: torch.Tensor  # (N_r, D)
    robot_trunk: torch.Tensor  # (N_r, ...) input of the first adapted stage
    human_offset: dict[int, int]
    robot_offset: dict[int, int]

    def batch(self, human_clips: np.ndarray, human_idx: np.ndarray, robot_clips: np.ndarray,
              robot_idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Gather (B, T, ...) tensors for clips and per-clip frame indices (B, T)."""
        hrow = torch.as_tensor(np.array([self.human_offset[int(c)] for c in human_clips])[:, None] + human_idx)
        rrow = torch.as_tensor(np.array([self.robot_offset[int(c)] for c in robot_clips])[:, None] + robot_idx)
        return {"human_feat": self.human_feat[hrow].to(device), "robot_feat": self.robot_feat[rrow].to(device),
                "robot_trunk": self.robot_trunk[rrow].to(device)}


def cache_key(encoder_spec: dict, pairs_sha256: str, stage: str, human_clips: list[int], robot_clips: list[int],
              gap: int = 0) -> str:
    """Cache identity: encoder spec (incl. weights hash), pairs file content, cut stage, clips used, frame-pair gap."""
    payload = json.dumps({"v": CACHE_VERSION, "encoder": encoder_spec, "pairs": pairs_sha256, "stage": stage,
                          "human": human_clips, "robot": robot_clips, "gap": gap}, sort_keys=True, default=str)
    return sha256_text(payload)[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hralign" / "features"


def _cache_outputs(frozen: nn.Module, adapted: nn.Module | None, stage: str | None):
    """The encoder of the cache pass: frozen features, plus (robot) the adapted trunk below ``stage``."""
    if adapted is None:
        return frozen

    def both(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Below its first adapted stage the adapted network is the frozen one, but the cut may be
        # a stage only the adapted network has (an inserted bottleneck): ask it.
        return frozen(x), adapted.forward_until(adapted.preprocess(x), stage)
    return both


def _offsets(pairs: PairsFile, domain: str, clips: list[int], gap: int) -> dict[int, int]:
    rows = np.concatenate([[0], np.cumsum(unit_counts(pairs, domain, clips, gap))])
    return {int(c): int(r) for c, r in zip(clips, rows[:-1])}


def build_feature_cache(pairs: PairsFile, frozen: nn.Module, adapted: nn.Module, stage: str, human_clips: list[int], robot_clips: list[int],
                        device: torch.device | Placement, cache_file: Path | None, gap: int = 0, batch_frames: int = 128,
                        progress: bool = True, shard: Shard | None = None) -> FeatureCache:
    """Compute (or load from ``cache_file``) the frozen features and robot trunk activations.

    ``adapted`` is used only below ``stage`` (its first adapted stage), where it is frozen.
    ``device`` is a torch device or a :class:`hralign.device.Placement` (device + precision).
    With ``shard`` of several processes (:func:`hralign.shard.current_shard`) and a ``cache_file``,
    EVERY process must call this: each encodes a contiguous share of the clips, the main process
    merges the parts in clip order and writes the cache, and all load it (the same file as one
    process writes, bit for bit: see :mod:`hralign.encoders.clips`).
    """
    if cache_file is not None and cache_file.exists():
        return _load_cache(cache_file)
    placement = device if isinstance(device, Placement) else Placement(torch.device(device), "fp32")
    shard = shard if shard is not None and cache_file is not None else Shard()
    arrays: dict[str, np.ndarray] = {}
    for domain, clips, net in (("human", human_clips, _cache_outputs(frozen, None, None)),
                               ("robot", robot_clips, _cache_outputs(frozen, adapted, stage))):
        clips = [int(c) for c in clips]
        lo, hi = shard_clips(pairs, domain, clips, shard, gap, batch_frames)
        out = encode_clips(net, pairs, domain, clips[lo:hi], gap=gap, batch_size=batch_frames, placement=placement,
                           progress=progress, desc=f"caching {domain} features")
        if domain == "human":
            arrays["human_feat"] = _cat(list(out))
        else:
            arrays["robot_feat"] = _cat([o[0] if isinstance(o, tuple) else o for o in out])
            arrays["robot_trunk"] = _cat([o[1] for o in out if isinstance(o, tuple)])
    merged = gather_parts({k: v.numpy() for k, v in arrays.items()},
                          cache_file.with_name(cache_file.name + ".parts") if cache_file is not None else Path("."), shard)
    h_off, r_off = _offsets(pairs, "human", human_clips, gap), _offsets(pairs, "robot", robot_clips, gap)
    if merged is not None:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in merged.items()}
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache_file.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps({"human_offset": h_off, "robot_offset": r_off}))
            with atomic_path(cache_file) as tmp:
                save_file({k: t.contiguous() for k, t in tensors.items()}, str(tmp))
    shard.barrier()
    if merged is None:  # another process wrote the merged cache
        return _load_cache(cache_file)
    return FeatureCache(tensors["human_feat"], tensors["robot_feat"], tensors["robot_trunk"], h_off, r_off)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    parts = [p for p in parts if p.shape[0] > 0]  # drops (0, 0) placeholders of clips with no units
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def _load_cache(cache_file: Path) -> FeatureCache:
    data = load_file(str(cache_file))
    meta = json.loads(cache_file.with_suffix(".json").read_text())
    return FeatureCache(data["human_feat"], data["robot_feat"], data["robot_trunk"],
                        {int(k): v for k, v in meta["human_offset"].items()},
                        {int(k): v for k, v in meta["robot_offset"].items()})
