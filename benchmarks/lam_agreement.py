"""Cross-embodiment code agreement of a LAM before and after HR-Align adaptation (issue 7).

Takes a trained LAM (``hralign lam train``) and its pairs file, trains an HR-Align adapter on the
LAM's IDM (robot branch only; frozen human and frozen robot latents of frame pairs (x_t, x_{t+gap})
at the same t, HR-Align loss, one t per pair per step), then labels the file before (frozen LAM
for both) and after (adapter on robot pairs) and prints code agreement on train and held-out
pairs, next to chance and the robot action probe. Prints measured figures; asserts nothing.

    python benchmarks/lam_agreement.py --pairs demo.h5 --lam runs/lam --out runs/lam_adapt [--steps 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hralign.adapters import attach_adapter, save_adapter, trainable_parameters
from hralign.align.loss import hralign_loss
from hralign.encoders import load_encoder
from hralign.lam.evaluate import code_agreement, probe_labels
from hralign.lam.labels import label_pairs, read_labels
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs


def frame_pair_batch(pf: PairsFile, pair_ids: np.ndarray, gap: int, rng: np.random.Generator):
    """uint8 (B, 2, H, W, 3) human and robot frame pairs at one shared t per pair."""
    hs, rs = [], []
    for p in pair_ids:
        h, r = (int(x) for x in pf.pairs[p])
        n = min(int(pf.clip_lengths("human")[h]), int(pf.clip_lengths("robot")[r])) - gap
        t = int(rng.integers(0, n))
        hs.append(pf.read_clip("human", h, [t, t + gap]))
        rs.append(pf.read_clip("robot", r, [t, t + gap]))
    return np.stack(hs), np.stack(rs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--lam", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="bottleneck", help="bottleneck (late, groups=1) or lora (IDM head)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    frozen = load_encoder(f"lam:{args.lam}")
    gap = frozen.gap
    options = {"placement": "late", "groups": 1} if args.method == "bottleneck" else {"target": r"^idm\.head\.[13]$", "r": 8}
    model = attach_adapter(frozen, args.method, **options)
    pf = PairsFile(args.pairs)
    train_idx, val_idx = split_pairs(pf)
    print(f"adapter {args.method}: {trainable_parameters(model)} trainable parameters; "
          f"{len(train_idx)} train / {len(val_idx)} held-out pairs; gap {gap}")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model.train()
    t0 = time.time()
    for step in range(1, args.steps + 1):
        ids = rng.choice(train_idx, size=min(args.batch_size, len(train_idx)), replace=False)
        hum, rob = frame_pair_batch(pf, ids, gap, rng)
        with torch.no_grad():
            h, r = frozen(hum), frozen(rob)
        loss = hralign_loss(h, r, model(rob))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / step:.3f} s/step)")
    model.eval()
    save_adapter(model, out / "adapter")

    before = label_pairs(args.pairs, args.lam, out / "labels_before.h5", overwrite=True)
    after = label_pairs(args.pairs, args.lam, out / "labels_after.h5", overwrite=True, robot_lam=out / "adapter")
    for name, path in (("before", before), ("after", after)):
        lab = read_labels(path)
        for split, idx in (("train", train_idx), ("held-out", val_idx)):
            a = code_agreement(lab, pf, idx)
            print(f"{name:6s} {split:8s} agreement {a['agreement_mean']:.3f} per token (chance {a['chance_mean']:.3f}), "
                  f"all tokens {a['agreement_all']:.3f}, latent retrieval top1 {a['latent_retrieval']['top1']:.3f} "
                  f"({a['matched']} rows)")
        p = probe_labels(lab, pf, "robot")
        print(f"{name:6s} robot action probe R^2 {p['r2']:.3f} (shuffled {p['r2_shuffled']:.3f})")


if __name__ == "__main__":
    main()
