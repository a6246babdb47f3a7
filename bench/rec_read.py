"""`.rec` read+decode throughput per core against the same images read from a folder.

Generates N 112x112 JPEGs (smooth face-sized noise, quality 95, like insightface's aligned
crops), writes them as `root/identity/image.jpg` and packs the same bytes into an insightface
`.rec`, then in one process with one thread times, interleaved over several rounds:
  - rec:    RecordDataset.load (read record, decode, normalise to float32 CHW) in batches
  - folder: FolderDataset.load on the same images
and, without the normalisation, raw read+decode to uint8. Images/s per core = images / CPU
seconds of this process (robust on a shared machine); wall-clock figures are printed too.
Target (issue 3): >= 3,000 images/s per core for 112x112 JPEG from .rec.

    PYTHONPATH=python .venv/bin/python bench/rec_read.py [--images 2000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from dmfr.data.folder import FolderDataset  # noqa: E402
from dmfr.data.recordio import RecordDataset, pack  # noqa: E402

IDENTITIES = 50


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)  # smooth content, like a face
        img = Image.fromarray(small).resize((112, 112), Image.BICUBIC)
        noise = rng.normal(0, 6, (112, 112, 3))
        arr = np.clip(np.asarray(img, np.float64) + noise, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)

    jpegs = make_jpegs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        labels = [i % IDENTITIES for i in range(args.images)]
        for i, (lab, data) in enumerate(zip(labels, jpegs)):
            d = os.path.join(tmp, "folder", f"id{lab:03d}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"{i:06d}.jpg"), "wb") as f:
                f.write(data)
        os.makedirs(os.path.join(tmp, "rec"))
        pack(os.path.join(tmp, "rec", "train.rec"), list(zip(labels, jpegs)))
        rec = RecordDataset(os.path.join(tmp, "rec"))
        folder = FolderDataset(os.path.join(tmp, "folder"))
        assert len(rec) == len(folder) == args.images
        order = np.random.default_rng(1).permutation(args.images)  # a training-like random order
        batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]

        def loads(ds):
            return lambda: [ds.load(b) for b in batches]

        def raw(ds):
            return lambda: [ds.read(int(i)) for i in order]

        cases = {"rec load": loads(rec), "folder load": loads(folder),
                 "rec read+decode": raw(rec), "folder read+decode": raw(folder)}
        for fn in cases.values():  # warm the page cache and the decoders
            fn()
        totals = {k: [0.0, 0.0] for k in cases}
        for _ in range(args.rounds):
            for k, fn in cases.items():
                w, c = timed(fn)
                totals[k][0] += w
                totals[k][1] += c
        n = args.images * args.rounds
        print(f"{args.images} JPEG 112x112 images (mean {np.mean([len(j) for j in jpegs]) / 1024:.1f} KiB), "
              f"{args.rounds} rounds, 1 thread, random order, batch {args.batch}")
        per_core = {}
        for k, (w, c) in totals.items():
            per_core[k] = n / c
            print(f"  {k:20s} {n / c:8.0f} images/s per core (CPU time)   {n / w:8.0f} images/s wall")
        print(f"ratio rec/folder, load (decode+normalise): {per_core['rec load'] / per_core['folder load']:.2f}x")
        print(f"ratio rec/folder, read+decode:             "
              f"{per_core['rec read+decode'] / per_core['folder read+decode']:.2f}x")
        target = 3000
        verdict = "meets" if per_core["rec load"] >= target else "BELOW"
        print(f"target >= {target} images/s per core (rec load): {verdict}")


if __name__ == "__main__":
    main()
