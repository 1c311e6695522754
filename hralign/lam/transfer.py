"""Motion transfer with a LAM world model: a human's motion replayed on a robot (IGOR's migration).

IGOR (Chen et al., 2024) "migrates" the motion of a human video onto a robot arm: the latent
actions its IDM extracts from the human clip are applied, step by step, by its world model to the
robot's first frame. hralign does the same with its LAM: the IDM labels the source clip's frame
pairs ``(x_0, x_gap), (x_gap, x_2gap), ...``, and :func:`hralign.lam.rollout.rollout` renders
those codes from the target clip's first frame.

On frame-aligned pairs (the synthetic demo set) the target's own continuation is the right answer,
so the transfer is scored against it, next to two baselines that use no motion information:

- ``copy``: predict the first frame for every step (nothing moves);
- ``random``: roll out uniformly random codes (the world model moves, but not as the human did);

and one reference that is not a baseline: ``oracle``, the target's *own* latent actions (how well
the world model can render this robot motion at all).

Two scores per method: whole-frame MSE, and MSE over the **moving region** only (``mse_moving``):
the pixels where the real target continuation differs from its first frame by more than
``motion_threshold`` at any step (max over RGB, frames in [0, 1]). On the demo most of a frame is
static background that every rollout renders about equally well (or equally blurred), which
hides differences in *where* things move; the moving-region score looks only where the real
motion is. The mask comes from the real frames alone, so it is the same for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hralign.errors import HRAlignError
from hralign.lam.model import LatentActionModel, psnr
from hralign.lam.rollout import infer_actions, rollout
from hralign.pairs import PairsFile

METHODS = ("transfer", "copy", "random", "oracle")
MOTION_THRESHOLD = 0.2  # ~50/255: above the synthetic set's per-frame pixel noise (95th pct ~0.11), below arm/object contrast
DOMAINS = ("human", "robot")


def parse_clip_ref(ref: str, option: str = "--source") -> tuple[str, int]:
    """``"human:3"`` -> ("human", 3). The domain is required: clip indices differ per domain."""
    domain, sep, idx = str(ref).partition(":")
    if not sep or domain not in DOMAINS:
        raise HRAlignError(f"{option} {ref!r}: expected DOMAIN:CLIP with DOMAIN one of {DOMAINS}, e.g. human:3")
    try:
        clip = int(idx)
    except ValueError:
        raise HRAlignError(f"{option} {ref!r}: clip index {idx!r} is not an integer") from None
    return domain, clip


def check_clip(pairs: PairsFile, domain: str, clip: int, image_size: int, option: str) -> int:
    """Clip exists and its frames are the LAM's size; returns its length."""
    if domain not in pairs.domains:
        raise HRAlignError(f"{option} {domain}:{clip}: {pairs.path} has no {domain} clips (it has {list(pairs.domains)})")
    n = pairs.num_clips(domain)
    if not 0 <= clip < n:
        raise HRAlignError(f"{option} {domain}:{clip}: clip index out of range; {pairs.path} has {n} {domain} clips "
                           f"(0..{n - 1})")
    h, w, _ = pairs.frame_shape(domain)
    if (h, w) != (image_size, image_size):
        raise HRAlignError(f"{option} {domain}:{clip}: frames are {h}x{w} but the LAM was trained on "
                           f"{image_size}x{image_size}; resample the file or train a LAM at this size")
    return int(pairs.clip_lengths(domain)[clip])


def max_steps(length: int, gap: int) -> int:
    """LAM steps a clip of ``length`` frames can condition on: frames 0, gap, ..., k*gap inside it."""
    return max((length - 1) // gap, 0)


def is_pair(pairs: PairsFile, source: tuple[str, int], target: tuple[str, int]) -> bool:
    """True when the two clips are listed together in /pairs (or are the same clip)."""
    if source == target:
        return True
    if {source[0], target[0]} != set(DOMAINS):
        return False
    h, r = (source[1], target[1]) if source[0] == "human" else (target[1], source[1])
    return bool(((pairs.pairs[:, 0] == h) & (pairs.pairs[:, 1] == r)).any())


@dataclass
class TransferResult:
    """One transfer. Frames are uint8 (S+1, H, W, 3); ``mse``/``psnr`` per method (mean over steps 1..S)."""

    source: tuple[str, int]
    target: tuple[str, int]
    steps: int
    gap: int
    paired: bool
    source_frames: np.ndarray  # the source at 0, gap, ..., S*gap
    rollout: np.ndarray  # the target's first frame driven by the source's latent actions
    random_rollout: np.ndarray  # the first random-code draw, for the figure
    real: np.ndarray | None  # the target at 0, gap, ..., S*gap (None when the clip is too short)
    codes: np.ndarray  # (S, tokens) the transferred codes
    mse: dict[str, float] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)
    mse_per_step: dict[str, list[float]] = field(default_factory=dict)
    mse_moving: dict[str, float] = field(default_factory=dict)  # MSE over the moving region (module docstring)
    mse_moving_per_step: dict[str, list[float]] = field(default_factory=dict)
    moving_fraction: float = 0.0  # share of the pixels in the moving region

    def summary(self) -> dict:
        return {"source": f"{self.source[0]}:{self.source[1]}", "target": f"{self.target[0]}:{self.target[1]}",
                "steps": self.steps, "gap": self.gap, "paired": self.paired, "codes": self.codes.tolist(),
                "mse": self.mse, "psnr": self.psnr, "mse_per_step": self.mse_per_step,
                "mse_moving": self.mse_moving, "mse_moving_per_step": self.mse_moving_per_step,
                "moving_fraction": self.moving_fraction}


def _per_step_mse(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(..., S+1, 3, H, W) pairs -> MSE per step (..., S), step 0 (the shared start) excluded."""
    return (pred[..., 1:, :, :, :] - real[..., 1:, :, :, :]).pow(2).mean(dim=(-3, -2, -1))


def moving_mask(real: torch.Tensor, threshold: float = MOTION_THRESHOLD) -> torch.Tensor:
    """(S+1, 3, H, W) real frames in [0, 1] -> bool (H, W): pixels that differ from frame 0 by more than
    ``threshold`` (max over RGB) at any later step."""
    return ((real[1:] - real[:1]).abs().amax(dim=1) > threshold).any(dim=0)


def _per_step_masked_mse(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """As :func:`_per_step_mse` but averaged over the pixels of ``mask`` (H, W) only."""
    err = (pred[..., 1:, :, :, :] - real[..., 1:, :, :, :]).pow(2).mean(dim=-3)  # (..., S, H, W)
    m = mask.to(err.dtype)
    return (err * m).sum(dim=(-2, -1)) / m.sum().clamp_min(1.0)


def _float_frames(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def transfer(model: LatentActionModel, pairs: PairsFile, source: tuple[str, int], target: tuple[str, int],
             steps: int | None = None, random_draws: int = 4, seed: int = 0,
             motion_threshold: float = MOTION_THRESHOLD) -> TransferResult:
    """Apply the source clip's latent actions to the target clip's first frame (module docstring).

    Parameters
    ----------
    model : LatentActionModel
        Pixel-target LAM; both clips must have its image size.
    pairs : PairsFile
    source, target : (domain, clip)
    steps : int, optional
        LAM steps (each ``gap`` frames); default and maximum: what the source clip can condition on.
    random_draws : int
        Random-code rollouts averaged for the ``random`` baseline.
    seed : int
        Seed of the random codes.
    motion_threshold : float
        Pixel change (in [0, 1], max over RGB) that puts a pixel in the moving region of the
        real continuation; ``mse_moving`` stays empty when no pixel moves.
    """
    if isinstance(motion_threshold, bool) or not isinstance(motion_threshold, (int, float)) \
            or not 0.0 <= motion_threshold < 1.0:
        raise HRAlignError(f"`motion_threshold` should be a number in [0, 1) but the value passed is {motion_threshold!r}")
    cfg = model.config
    src_len = check_clip(pairs, *source, cfg.image_size, "--source")
    tgt_len = check_clip(pairs, *target, cfg.image_size, "--target")
    available = max_steps(src_len, cfg.gap)
    if available < 1:
        raise HRAlignError(f"--source {source[0]}:{source[1]}: {src_len} frames give no (t, t+{cfg.gap}) frame pair "
                           f"for a LAM of gap {cfg.gap}")
    if steps is None:
        steps = available
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise HRAlignError(f"--steps should be a positive integer but the value passed is {steps!r}")
    if steps > available:
        raise HRAlignError(f"--steps {steps}: the source clip {source[0]}:{source[1]} has {src_len} frames, enough for "
                           f"at most {available} LAM steps of {cfg.gap} frames")
    if random_draws < 1:
        raise HRAlignError(f"`random_draws` should be a positive integer but the value passed is {random_draws}")
    idx = np.arange(steps + 1) * cfg.gap
    src = pairs.read_clip(source[0], source[1], idx)  # (S+1, H, W, 3)
    codes, _ = infer_actions(model, src)  # (S, tokens)
    tgt_idx = idx[idx < tgt_len]
    tgt = pairs.read_clip(target[0], target[1], tgt_idx)
    start = tgt[:1]
    g = torch.Generator().manual_seed(int(seed))
    rand_codes = torch.randint(0, cfg.codebook_size, (random_draws, steps, cfg.tokens), generator=g)
    roll = rollout(model, start, codes[None])
    rand = rollout(model, np.repeat(start, random_draws, 0), rand_codes)
    real = tgt if len(tgt_idx) == steps + 1 else None
    paired = is_pair(pairs, source, target)
    result = TransferResult(source, target, steps, cfg.gap, paired, src, roll.uint8()[0], rand.uint8()[0], real,
                            codes.cpu().numpy())
    if real is not None and paired:
        real_t = _float_frames(real)  # (S+1, 3, H, W)
        oracle_codes, _ = infer_actions(model, real)
        oracle = rollout(model, start, oracle_codes[None])
        preds = {"transfer": (roll.frames[0].cpu(), False), "copy": (real_t[:1].expand_as(real_t), False),
                 "random": (rand.frames.cpu(), True), "oracle": (oracle.frames[0].cpu(), False)}
        per = {k: _per_step_mse(p, real_t[None] if many else real_t) for k, (p, many) in preds.items()}
        per["random"] = per["random"].mean(0)
        result.mse_per_step = {k: [float(x) for x in v] for k, v in per.items()}
        result.mse = {k: float(v.mean()) for k, v in per.items()}
        result.psnr = {k: psnr(v) for k, v in result.mse.items()}
        mask = moving_mask(real_t, motion_threshold)
        result.moving_fraction = float(mask.float().mean())
        if bool(mask.any()):
            mov = {k: _per_step_masked_mse(p, real_t[None] if many else real_t, mask) for k, (p, many) in preds.items()}
            mov["random"] = mov["random"].mean(0)
            result.mse_moving_per_step = {k: [float(x) for x in v] for k, v in mov.items()}
            result.mse_moving = {k: float(v.mean()) for k, v in mov.items()}
    return result


def evaluate_transfer(model: LatentActionModel, pairs: PairsFile, indices: np.ndarray | None = None,
                      steps: int | None = None, random_draws: int = 4, seed: int = 0,
                      motion_threshold: float = MOTION_THRESHOLD) -> dict:
    """Human -> robot transfer on each pair in ``indices`` (default: the validation pairs).

    Returns ``{"rows": [per-pair summary], "mean_mse": {method: ...}, "mean_psnr": {...},
    "wins": {"copy": n, "random": n}, "pairs": n}`` where ``wins[b]`` counts pairs whose transfer
    error is below baseline ``b``; the same over the moving region as ``mean_mse_moving`` and
    ``wins_moving`` (over the ``pairs_moving`` pairs whose real continuation moves at all).
    """
    if indices is None:
        from hralign.pairs.split import split_pairs

        indices = split_pairs(pairs)[1]
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise HRAlignError(f"{pairs.path}: no pairs to evaluate the transfer on (empty validation split)")
    rows = []
    for i in indices:
        h, r = (int(x) for x in pairs.pairs[int(i)])
        res = transfer(model, pairs, ("human", h), ("robot", r), steps, random_draws, seed + int(i), motion_threshold)
        if not res.mse:
            continue  # robot clip too short for the real continuation
        row = res.summary()
        row.update(pair=int(i), task=int(pairs.clip_tasks("robot")[r]))
        rows.append(row)
    if not rows:
        raise HRAlignError(f"{pairs.path}: no validation pair has a robot clip long enough to score the transfer")
    mean = {m: float(np.mean([row["mse"][m] for row in rows])) for m in METHODS}
    moving = [row for row in rows if row["mse_moving"]]
    return {"pairs": len(rows), "rows": rows, "mean_mse": mean,
            "mean_psnr": {m: float(np.mean([row["psnr"][m] for row in rows])) for m in METHODS},
            "wins": {b: int(sum(row["mse"]["transfer"] < row["mse"][b] for row in rows)) for b in ("copy", "random")},
            "motion_threshold": float(motion_threshold), "pairs_moving": len(moving),
            "mean_mse_moving": {m: float(np.mean([row["mse_moving"][m] for row in moving])) if moving else float("nan")
                                for m in METHODS},
            "mean_moving_fraction": float(np.mean([row["moving_fraction"] for row in rows])),
            "wins_moving": {b: int(sum(row["mse_moving"]["transfer"] < row["mse_moving"][b] for row in moving))
                            for b in ("copy", "random")}}


def format_table(report: dict) -> str:
    """The per-pair table of :func:`evaluate_transfer` as fixed-width text (MSE, PSNR in dB)."""
    lines = [f"{'pair':>4} {'task':>4} {'human':>5} {'robot':>5} | {'transfer':>15} {'copy-first':>15} "
             f"{'random-latent':>15} | {'oracle (own)':>15}"]
    for row in report["rows"]:
        cells = " ".join(f"{row['mse'][m]:.5f} {row['psnr'][m]:5.2f}dB" for m in ("transfer", "copy", "random"))
        lines.append(f"{row['pair']:>4} {row['task']:>4} {row['source'].split(':')[1]:>5} {row['target'].split(':')[1]:>5} | "
                     f"{cells} | {row['mse']['oracle']:.5f} {row['psnr']['oracle']:5.2f}dB")
    mm, mp = report["mean_mse"], report["mean_psnr"]
    cells = " ".join(f"{mm[m]:.5f} {mp[m]:5.2f}dB" for m in ("transfer", "copy", "random"))
    lines.append(f"{'mean':>4} {'':>4} {'':>5} {'':>5} | {cells} | {mm['oracle']:.5f} {mp['oracle']:5.2f}dB")
    lines.append(f"transfer below copy-first on {report['wins']['copy']}/{report['pairs']} pairs, "
                 f"below random-latent on {report['wins']['random']}/{report['pairs']} pairs (MSE, lower is better)")
    if "mean_mse_moving" in report:
        lines.append("")
        lines.append(f"moving region only (pixels of the real robot continuation that change by > "
                     f"{report['motion_threshold']:g} from its first frame; "
                     f"{report['mean_moving_fraction']:.1%} of the pixels on average):")
        lines.append(f"{'pair':>4} {'moving':>6} | {'transfer':>9} {'copy-first':>10} {'random':>9} | {'oracle':>9}")
        for row in report["rows"]:
            mv = row["mse_moving"]
            if not mv:
                lines.append(f"{row['pair']:>4} {row['moving_fraction']:>6.1%} | (nothing moves)")
                continue
            lines.append(f"{row['pair']:>4} {row['moving_fraction']:>6.1%} | {mv['transfer']:>9.5f} {mv['copy']:>10.5f} "
                         f"{mv['random']:>9.5f} | {mv['oracle']:>9.5f}")
        mm = report["mean_mse_moving"]
        lines.append(f"{'mean':>4} {'':>6} | {mm['transfer']:>9.5f} {mm['copy']:>10.5f} {mm['random']:>9.5f} | "
                     f"{mm['oracle']:>9.5f}")
        n = report["pairs_moving"]
        lines.append(f"moving region: transfer below copy-first on {report['wins_moving']['copy']}/{n} pairs, "
                     f"below random-latent on {report['wins_moving']['random']}/{n} pairs")
    return "\n".join(lines)

