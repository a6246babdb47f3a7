"""Calibrate the built-in generators' fingerprints ε on face photographs (docs/domains.md).

For each generator and strength: the PSNR of the Δc = 0 output against the same generator's
strength-0 output (how visible ε is), and the held-out accuracy of a linear probe on pixels that
tells real photographs from synthetic ones made from *other* photographs, people split
train/test (dmfr.analysis.fingerprint). Photographs: ORL (all 400) and LFW (grey; its people with
≥ 2 images, cropped to the ArcFace template's box), from ../shared/data/faces.

    PYTHONPATH=python .venv/bin/python bench/fingerprint_calibration.py --size 64 --strengths 0 0.5 1 2
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from dmfr.analysis.fingerprint import LFW_TEMPLATE_BOX, pixel_probe, psnr, read_photos
from dmfr.data import synth

FACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "faces")


def photo_sets(size: int, lfw_people: int, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    readers = {
        "ORL": lambda: read_photos(os.path.join(FACES, "orl"), size),
        "LFW": lambda: read_photos(os.path.join(FACES, "lfw", "images"), size, box=LFW_TEMPLATE_BOX,
                                   per_identity=4, identities=lfw_people, min_images=2),
    }
    return {name: readers[name]() for name in names}


def calibrate(images: np.ndarray, ids: np.ndarray, generator: str, strength: float, seed: int = 0) -> dict:
    """PSNR (mean over images) and probe accuracy at one strength, Δc = 0."""
    gen = synth.get_generator(generator)
    # Half the photographs stay real, the other half become synthetic (disjoint sources).
    order = np.random.default_rng(seed).permutation(len(images))
    half = len(images) // 2
    real, src = order[:half], order[half:2 * half]
    plain = gen.apply(images[src], np.zeros(half), strength=0.0)
    fake = gen.apply(images[src], np.zeros(half), strength=strength)
    db = float(np.mean([psnr(f, p) for f, p in zip(fake, plain)])) if strength > 0 else float("inf")
    probe = pixel_probe(images[real], fake, np.r_[ids[real], ids[src]], seed=seed)
    return {"psnr": db, **probe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0, 0.5, 1, 2])
    ap.add_argument("--generators", nargs="+", default=sorted(synth.GENERATORS))
    ap.add_argument("--lfw-people", type=int, default=150)
    ap.add_argument("--sets", nargs="+", choices=["ORL", "LFW"], default=["ORL", "LFW"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sets = photo_sets(args.size, args.lfw_people, args.sets)
    print("| photos | images | generator | strength | PSNR vs strength 0 (dB) | probe accuracy (held out) | test images |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        images, ids = sets[name]
        for gen in args.generators:
            for s in args.strengths:
                r = calibrate(images, ids, gen, s, args.seed)
                print(f"| {name} {args.size} px | {len(images)} | `{gen}` | {s:g} | {r['psnr']:.1f} | "
                      f"{r['accuracy']:.3f} | {r['n_test']} |", flush=True)


if __name__ == "__main__":
    main()
