"""`dmfr embed CKPT --images DIR|LIST --out FEATURES.npy [--flip] [--batch-size N] [--device cpu|cuda]`.

Writes float32 features [N, D] to FEATURES.npy and FEATURES.keys.txt (one image path per row,
relative to the images root, same order).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def keys_path(out: Path) -> Path:
    return out.with_name((out.name[:-4] if out.name.endswith(".npy") else out.name) + ".keys.txt")


def _embed(args: argparse.Namespace) -> int:
    from dmfr.checkpoint import atomic_write
    from dmfr.embed import Embedder, list_images
    from dmfr.errors import DmfrError

    if args.batch_size < 1:
        raise DmfrError(f"--batch-size must be at least 1, got {args.batch_size}")
    root, keys = list_images(args.images)
    embedder = Embedder.from_checkpoint(args.ckpt, device=args.device, landmarks=args.landmarks)
    feats = embedder.embed_paths([root / k for k in keys], flip=args.flip, batch_size=args.batch_size, keys=keys)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: np.save(f, feats))
    atomic_write(keys_path(out), lambda f: f.write("".join(k + "\n" for k in keys).encode()))
    print(f"{len(keys)} images -> {out} ({feats.shape[1]}-d float32{', flip-sum' if args.flip else ''}), "
          f"keys in {keys_path(out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="face features of images from a checkpoint")
    p.add_argument("ckpt", help="dmfr checkpoint (step-*.pt) or backbone file (dmfr model import)")
    p.add_argument("--images", required=True, help="image directory, or a list file (path [label] per line)")
    p.add_argument("--out", required=True, help="FEATURES.npy (keys go to FEATURES.keys.txt)")
    p.add_argument("--flip", action="store_true", help="add the features of the mirrored image (flip-sum TTA)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--landmarks", help="landmarks file for these images (a model trained with 5-point "
                                       "alignment; default: the one its config names)")
    p.set_defaults(func=_embed)
