"""Cross-embodiment code agreement of a LAM before and after HR-Align adaptation.

Takes a trained LAM (``hralign lam train``) and its pairs file, trains an HR-Align adapter on the
LAM's IDM with ``hralign adapt``'s own trainer (robot branch only; frozen human and frozen robot
latents of frame pairs (x_t, x_{t+gap}) at the same t), then labels the file before (frozen LAM
for both) and after (adapter on robot pairs) and prints code agreement on train and held-out
pairs, next to chance and the robot action probe. Prints measured figures; asserts nothing.

    python benchmarks/lam_agreement.py --pairs demo.h5 --lam runs/lam --out runs/lam_adapt [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hralign.align.config import AdaptConfig
from hralign.align.trainer import run_adapt
from hralign.lam.evaluate import code_agreement, probe_labels
from hralign.lam.labels import label_pairs, read_labels
from hralign.pairs import PairsFile
from hralign.pairs.split import split_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--lam", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="bottleneck", help="bottleneck (late, groups=1) or lora (IDM head)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per step (at most the validation pairs)")
    ap.add_argument("--frames", type=int, default=1, help="frame pairs per clip per step, mean-pooled")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    options = {"groups": 1} if args.method == "bottleneck" else {"target": r"^idm\.head\.[13]$", "r": 8}
    config = AdaptConfig(pairs=args.pairs, out=str(out / "adapt"), encoder=f"lam:{args.lam}", method=args.method,
                         adapter_options=json.dumps(options), frames=args.frames, batch_size=args.batch_size,
                         steps=args.steps, lr=args.lr, seed=args.seed, eval_every=0, checkpoint_every=0, device="cpu",
                         overwrite=True)
    t0 = time.time()
    run_adapt(config, progress=False, echo=print)
    print(f"adapt: {args.steps} steps of {args.batch_size} pairs x {args.frames} frame pairs, seed {args.seed}, "
          f"{time.time() - t0:.0f} s")

    pf = PairsFile(args.pairs)
    train_idx, val_idx = split_pairs(pf)
    adapter = out / "adapt" / "adapter"
    before = label_pairs(args.pairs, args.lam, out / "labels_before.h5", overwrite=True)
    after = label_pairs(args.pairs, args.lam, out / "labels_after.h5", overwrite=True, robot_lam=adapter)
    for name, path in (("before", before), ("after", after)):
        lab = read_labels(path)
        for split, idx in (("train", train_idx), ("held-out", val_idx)):
            a = code_agreement(lab, pf, idx)
            print(f"{name:6s} {split:8s} agreement {a['agreement_mean']:.3f} per token (chance {a['chance_mean']:.3f}), "
                  f"all tokens {a['agreement_all']:.3f}, latent retrieval top1 {a['latent_retrieval']['top1']:.3f} "
                  f"({a['matched']} rows)")
        p = probe_labels(lab, pf, "robot")
        print(f"{name:6s} robot action_probe_r2 {p['action_probe_r2']:.3f} "
              f"(shuffled {p['action_probe_r2_shuffled']:.3f})")


if __name__ == "__main__":
    main()
