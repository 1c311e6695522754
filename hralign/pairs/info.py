"""What is in a pairs file: counts, tasks, shapes, bytes and per-domain pixel statistics.

Pixel statistics come from an evenly spaced sample of frames (``max_frames``, read one at a
time), so ``info`` on a file larger than memory stays fast and flat in memory.
"""

from __future__ import annotations

import os

import numpy as np

from hralign.pairs import schema as S
from hralign.pairs.reader import PairsFile
from hralign.pairs.validate import check_valid


def pairs_info(path: str | os.PathLike, max_frames: int = 256, check: bool = True) -> dict:
    """A JSON-able summary of the pairs file ``path`` (checked with ``validate`` first unless ``check=False``).

    Keys: ``path``, ``file_bytes``, ``num_pairs``, ``num_tasks``, ``tasks`` (list of
    {index, instruction, pairs}), ``split`` ({train, val} or None) and ``domains``: per domain
    ``clips``, ``frames``, ``frame_shape``, ``clip_length`` (min/mean/max), ``bytes`` (stored
    frames), ``pixel_mean``/``pixel_std`` (per RGB channel, in [0, 1]) over ``sampled_frames``,
    and ``actions_dim``/``state_dim`` and ``clip_split`` ({train, val} of the clips) when present.
    """
    if check:
        check_valid(path)
    pf = PairsFile(path)
    h = pf._handle()
    pair_task = pf.clip_tasks("human")[pf.pairs[:, 0]] if pf.num_pairs and "human" in pf.domains else np.zeros(0, np.int64)
    info: dict = {
        "path": str(pf.path),
        "file_bytes": int(os.path.getsize(pf.path)),
        "num_pairs": pf.num_pairs,
        "num_tasks": pf.num_tasks,
        "tasks": [{"index": k, "instruction": t, "pairs": int((pair_task == k).sum())} for k, t in enumerate(pf.tasks)],
        "split": None if pf.split is None else {"train": int((pf.split == S.SPLIT_TRAIN).sum()),
                                                 "val": int((pf.split == S.SPLIT_VAL).sum())},
        "domains": {},
    }
    for d in pf.domains:
        ds = h[d][S.FRAMES]
        n = int(ds.shape[0])
        lengths = pf.clip_lengths(d)
        rows = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(np.int64))
        # Streamed sums in float64: one frame in memory at a time.
        s1 = np.zeros(3)
        s2 = np.zeros(3)
        count = 0
        for r in rows:
            x = ds[int(r)].reshape(-1, 3).astype(np.float64) / 255.0
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            count += x.shape[0]
        mean = s1 / max(count, 1)
        std = np.sqrt(np.maximum(s2 / max(count, 1) - mean ** 2, 0.0))
        entry = {
            "clips": pf.num_clips(d),
            "frames": n,
            "frame_shape": list(pf.frame_shape(d)),
            "clip_length": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
            "bytes": int(ds.id.get_storage_size()),
            "pixel_mean": [round(float(v), 4) for v in mean],
            "pixel_std": [round(float(v), 4) for v in std],
            "sampled_frames": int(len(rows)),
        }
        for name in S.PER_FRAME_OPTIONAL:
            if pf.has(d, name):
                entry[f"{name}_dim"] = int(h[d][name].shape[1])
        clip_split = pf.clip_split(d)
        if clip_split is not None:
            entry["clip_split"] = {"train": int((clip_split == S.SPLIT_TRAIN).sum()),
                                   "val": int((clip_split == S.SPLIT_VAL).sum())}
        info["domains"][d] = entry
    pf.close()
    return info


def format_info(info: dict) -> str:
    """Human-readable text of :func:`pairs_info`'s dict (what ``hralign pairs info`` prints)."""
    lines = [f"{info['path']}: {info['num_pairs']} pairs, {info['num_tasks']} tasks, {info['file_bytes'] / 2**20:.2f} MiB"]
    per_clip = {d: e["clip_split"] for d, e in info["domains"].items() if "clip_split" in e}
    if info["split"]:
        lines.append(f"split: {info['split']['train']} train, {info['split']['val']} val (stored in /split)")
    elif per_clip:  # an import without pairs keeps its split per clip
        lines.append("split: " + "; ".join(f"{d} clips {c['train']} train, {c['val']} val" for d, c in per_clip.items())
                     + f" (stored in /<domain>/{S.CLIP_SPLIT})")
    else:
        lines.append("split: none stored (datasets make one by pair or by task)")
    for d, e in info["domains"].items():
        extra = "".join(f", {k.split('_')[0]} dim {e[k]}" for k in ("actions_dim", "state_dim") if k in e)
        lines.append(f"{d}: {e['clips']} clips, {e['frames']} frames of {'x'.join(map(str, e['frame_shape']))}, "
                     f"clip length {e['clip_length']['min']}..{e['clip_length']['max']} (mean {e['clip_length']['mean']:.1f}), "
                     f"{e['bytes'] / 2**20:.2f} MiB{extra}")
        lines.append(f"  pixel mean RGB {e['pixel_mean']}, std {e['pixel_std']} (over {e['sampled_frames']} frames)")
    lines.append("tasks:")
    lines.extend(f"  {t['index']:>3}  {t['pairs']:>4} pairs  {t['instruction']}" for t in info["tasks"])
    return "\n".join(lines)
