"""images/s of ``enc(uint8 images)`` against the bare backbone forward on pre-normalised tensors.

Same encoder weights, same batch, same run: the ratio says what hralign's input checks,
uint8 -> float conversion and normalisation cost on top of the network (goal: >= 0.9).
Usage: ``OMP_NUM_THREADS=2 python benchmarks/encode.py --encoder r3m-resnet18 --image-size 224 --batch 32``
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from hralign.encoders import RandomInitWarning, load_encoder


def _rate(fn, batch: int, repeats: int) -> float:
    with torch.inference_mode():
        fn()  # warm-up (allocator, kernels)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="r3m-resnet18")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--input-size", type=int, default=None, help="side of the uint8 images (default: image size, no resize)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        enc = load_encoder(args.encoder, image_size=args.image_size).to(args.device)
    side = args.input_size or args.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, side, side, 3), generator=g, dtype=torch.uint8).to(args.device)
    pre = enc.preprocess(images)  # what the bare backbone gets: already normalised float [B, 3, S, S]
    stages = enc.stages()

    def bare():
        x = pre
        for _, fn in stages:
            x = fn(x)
        _sync(args.device)
        return x

    def full():
        y = enc(images)
        _sync(args.device)
        return y

    assert torch.allclose(bare(), full(), atol=1e-5)  # benchmark sanity: same computation
    r_bare = _rate(bare, args.batch, args.repeats)
    r_full = _rate(full, args.batch, args.repeats)
    print(f"encoder {args.encoder}  image {side}->{args.image_size}  batch {args.batch}  device {args.device}  threads {torch.get_num_threads()}")
    print(f"bare backbone on normalised float : {r_bare:9.1f} images/s")
    print(f"enc(uint8 images)                 : {r_full:9.1f} images/s")
    print(f"ratio                             : {r_full / r_bare:9.3f}  (goal >= 0.9)")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
