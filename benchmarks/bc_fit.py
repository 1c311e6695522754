"""How well R3M's BC head (the `sim eval` policy) fits robot demos from an encoder's frozen features.

Why this exists: in the v2 full preset the corpus base's features predict the expert's robot actions
better than random-init's in closed form (the action probe), yet BC on them fits its own demos ~20x
worse and succeeds less. This trains the same BCPolicy with the same loop (`run_stage`) on the
same demo table as `sim eval --protocol robot`, on the file's training clips, and reports the
training-frame MSE (the fit) and the held-out-clip MSE, per encoder, optionally after PCA-whitening
the features (fit on the training frames) and at more steps: which of conditioning or training
budget limits the fit.

    python benchmarks/bc_fit.py --pairs eval.h5 --encoder random-init=r3m-resnet18 --encoder base=runs/x/pretrain \
        --steps 1000,4000 --whiten

One JSON line per (encoder, whitening, steps).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch


def whiten(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-6) -> list[torch.Tensor]:
    """PCA-whiten with the training frames' mean and covariance (every direction at unit variance).

    By hand rather than scikit-learn's ``PCA(whiten=True)``: that divides by the raw singular values,
    and these features have near-zero-variance directions; the ``eps`` floor here bounds the gain.
    """
    mean = train.mean(0, keepdim=True)
    cov = torch.cov((train - mean).T.double())
    ev, vec = torch.linalg.eigh(cov)
    w = (vec / (ev.clamp_min(0) + eps).sqrt()).float()
    return [(x - mean) @ w for x in (train, *others)]


def main() -> None:
    from hralign.pairs import PairsFile
    from hralign.pairs.split import split_pairs
    from hralign.policy import BCConfig, BCPolicy, EncoderSource, TrainConfig
    from hralign.policy.features import features_by_clip
    from hralign.policy.train import run_stage
    from hralign_bench.alignment import participation_ratio
    from hralign.sim.evaluate import bc_demo_mse, demo_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--encoder", action="append", required=True, help="name=spec")
    ap.add_argument("--steps", default="1000", help="comma-separated step counts")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--whiten", action="store_true", help="also train on PCA-whitened features")
    args = ap.parse_args()
    pf = PairsFile(args.pairs)
    train, val = split_pairs(pf)
    clips = {"train": {"robot": np.sort(pf.pairs[train, 1])}, "val": {"robot": np.sort(pf.pairs[val, 1])}}
    size = pf.frame_shape("robot")[0]
    for item in args.encoder:
        name, _, spec = item.partition("=")
        enc = EncoderSource(spec or name, image_size=size).robot_encoder()
        feats = {"robot": features_by_clip(enc, pf, "robot", np.concatenate([clips["train"]["robot"], clips["val"]["robot"]]))}
        tables = {k: demo_table(pf, feats, c) for k, c in clips.items()}
        variants = {"raw": (tables["train"]["features"], tables["val"]["features"])}
        if args.whiten:
            variants["whitened"] = tuple(whiten(tables["train"]["features"], tables["val"]["features"]))
        for how, (ftr, fva) in variants.items():
            tr = {**tables["train"], "features": ftr}
            va = {**tables["val"], "features": fva}
            for steps in (int(s) for s in args.steps.split(",")):
                t = time.perf_counter()
                torch.manual_seed(args.seed)
                policy = BCPolicy(BCConfig(head="bc", proprio=True), int(ftr.shape[1]), int(tr["action"].shape[1]),
                                  int(tr["state"].shape[1]))
                policy.fit_head(tr["action"])
                with tempfile.TemporaryDirectory() as run:
                    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, seed=args.seed, log_every=steps,
                                      checkpoint_every=steps)
                    run_stage(policy, "action", tr, None, cfg, steps, run, progress=False)
                print(json.dumps({"encoder": name, "features": how, "steps": steps,
                                  "frame_rank": round(participation_ratio(ftr.numpy()), 2),
                                  "train_mse": round(bc_demo_mse(policy, tr), 5), "val_mse": round(bc_demo_mse(policy, va), 5),
                                  "train_frames": int(len(ftr)), "val_frames": int(len(fva)),
                                  "seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
