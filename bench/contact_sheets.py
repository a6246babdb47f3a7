"""Contact sheets of the built-in generators on face photographs, for docs/domains.md.

One PNG per generator and photo set: each block is one real source (left) and its synthetic
images at the Δc steps; its rows are the fingerprint strengths 0, 1 (the default) and 2. Faces
are ORL (resized whole) and LFW (cropped to the ArcFace template's box), from
../shared/data/faces; the PNGs go to docs/img/ (the photographs themselves are not copied
into the repository; only these small reduced sheets are).

    PYTHONPATH=python .venv/bin/python bench/contact_sheets.py --out docs/img
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

from dmfr.analysis.fingerprint import LFW_TEMPLATE_BOX, read_photos
from dmfr.data import synth

FACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "faces")
DELTAS = {"pose": [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0], "quality": [0.0, 0.25, 0.5, 0.75, 1.0]}
STRENGTHS = [0.0, 1.0, 2.0]
LABEL_H = 14


def sources(which: str, size: int, people: list[str]) -> np.ndarray:
    root = os.path.join(FACES, "orl" if which == "orl" else "lfw10")
    box = None if which == "orl" else LFW_TEMPLATE_BOX
    images, ids = read_photos(root, size, box=box, per_identity=1)
    names = sorted(p for p in os.listdir(root) if os.path.isdir(os.path.join(root, p)))
    return np.stack([images[names.index(p)] for p in people])


def sheet(generator: str, images: np.ndarray, size: int) -> Image.Image:
    gen = synth.get_generator(generator)
    deltas = DELTAS[generator]
    cols, rows = 1 + len(deltas), len(images) * len(STRENGTHS)
    canvas = Image.new("RGB", (cols * size, LABEL_H + rows * size), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), "source", fill="black")
    for j, d in enumerate(deltas, start=1):
        draw.text((j * size + 2, 1), f"dc={d:+g}", fill="black")
    for i, src in enumerate(images):
        for k, s in enumerate(STRENGTHS):
            y = LABEL_H + (i * len(STRENGTHS) + k) * size
            canvas.paste(Image.fromarray(src), (0, y))
            draw.text((2, y + size - 12), f"s={s:g}", fill="yellow")
            out = gen.apply(np.repeat(src[None], len(deltas), 0), np.array(deltas, np.float32), strength=s,
                            rng=np.random.default_rng(0))
            for j, im in enumerate(out, start=1):
                canvas.paste(Image.fromarray(im), (j * size, y))
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--size", type=int, default=88, help="generation and cell size (default 88: sheets < 300 KB)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    people = {"orl": ["s5"], "lfw": ["Colin_Powell"]}
    for which, names in people.items():
        images = sources(which, args.size, names)
        for generator in sorted(DELTAS):
            path = os.path.join(args.out, f"{generator}_{which}.png")
            sheet(generator, images, args.size).save(path, optimize=True)
            print(f"{path}: {os.path.getsize(path) // 1024} KB")


if __name__ == "__main__":
    main()
