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
from tqdm.auto import tqdm

from hralign.align.pooling import FramePooling
from hralign.atomic import atomic_path
from hralign.hashing import sha256_text
from hralign.pairs import PairsFile

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


@torch.no_grad()
def _encode_clips(pairs: PairsFile, domain: str, clips: list[int], frozen: nn.Module, adapted: nn.Module | None,
                  stage: str | None, device: torch.device, batch_frames: int, progress: bool, gap: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[int, int]]:
    feats, trunks, offsets, row = [], [], {}, 0
    lengths = pairs.clip_lengths(domain)
    for clip in tqdm(clips, desc=f"caching {domain} features", disable=not progress, unit="clip"):
        offsets[clip] = row
        units = int(lengths[clip]) - gap  # frames, or frame pairs (t, t+gap) for a LAM encoder
        frames = read_units(pairs, domain, clip, np.arange(units), gap)
        for lo in range(0, len(frames), batch_frames):
            x = torch.from_numpy(frames[lo:lo + batch_frames]).to(device)
            feats.append(frozen(x).float().cpu())
            if adapted is not None:
                # Below its first adapted stage the adapted network is the frozen one, but the cut
                # may be a stage only the adapted network has (an inserted bottleneck): ask it.
                trunks.append(adapted.forward_until(adapted.preprocess(x), stage).float().cpu())
        row += units
    return torch.cat(feats), (torch.cat(trunks) if trunks else None), offsets


def build_feature_cache(pairs: PairsFile, frozen: nn.Module, adapted: nn.Module, stage: str, human_clips: list[int], robot_clips: list[int],
                        device: torch.device, cache_file: Path | None, gap: int = 0, batch_frames: int = 128,
                        progress: bool = True) -> FeatureCache:
    """Compute (or load from ``cache_file``) the frozen features and robot trunk activations.

    ``adapted`` is used only below ``stage`` (its first adapted stage), where it is frozen.
    """
    if cache_file is not None and cache_file.exists():
        data = load_file(str(cache_file))
        meta = json.loads(cache_file.with_suffix(".json").read_text())
        return FeatureCache(data["human_feat"], data["robot_feat"], data["robot_trunk"],
                            {int(k): v for k, v in meta["human_offset"].items()},
                            {int(k): v for k, v in meta["robot_offset"].items()})
    h_feat, _, h_off = _encode_clips(pairs, "human", human_clips, frozen, None, None, device, batch_frames, progress, gap)
    r_feat, r_trunk, r_off = _encode_clips(pairs, "robot", robot_clips, frozen, adapted, stage, device, batch_frames,
                                           progress, gap)
    cache = FeatureCache(h_feat, r_feat, r_trunk, h_off, r_off)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"human_offset": h_off, "robot_offset": r_off}))
        with atomic_path(cache_file) as tmp:
            save_file({"human_feat": h_feat.contiguous(), "robot_feat": r_feat.contiguous(),
                       "robot_trunk": r_trunk.contiguous()}, str(tmp))
    return cache
