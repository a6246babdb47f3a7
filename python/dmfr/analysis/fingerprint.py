"""How visible, and how learnable, a built-in generator's fingerprint ε is on photographs.

`psnr` measures what a person sees: the fingerprinted image against the same generator's
strength-0 output (g alone). `pixel_probe` measures what a network can learn: a logistic
regression on raw pixels, trained on some people's real and synthetic images and scored on other
people's (identity-disjoint, so it cannot pass by recognising faces), like the paper's
"Synthesis Sample Modal Visualization" asks of features. `read_photos` loads the face
photographs these checks run on (docs/domains.md, "Calibration on photographs").
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from dmfr.errors import DataError

# LFW's 250×250 crops are not aligned; this box puts the average LFW face (eyes near (105, 115)
# and (145, 115)) on the ArcFace template's eyes when resized to a square.
LFW_TEMPLATE_BOX = (61, 56, 188, 183)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images a against b (peak 255), over all pixels."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def read_photos(folder: str, size: int, *, box: tuple[int, int, int, int] | None = None,
                per_identity: int | None = None, identities: int | None = None,
                min_images: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [N, size, size, 3] and int identity labels [N] from root/identity/image
    (sorted; grey images become RGB), each cropped to `box` (PIL's left, top, right, bottom) if
    given, then resized to a square with Pillow's bicubic filter."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder of face photographs")
    people = sorted(p for p in os.listdir(folder) if os.path.isdir(os.path.join(folder, p)))
    images, labels = [], []
    for person in people:
        files = sorted(f for f in os.listdir(os.path.join(folder, person)) if not f.startswith("."))
        if len(files) < min_images:
            continue
        for name in files[:per_identity]:
            with Image.open(os.path.join(folder, person, name)) as im:
                im = im.convert("RGB")
                if box is not None:
                    im = im.crop(box)
                images.append(np.asarray(im.resize((size, size), Image.BICUBIC), np.uint8))
            labels.append(person)
        if identities is not None and len(set(labels)) >= identities:
            break
    if not images:
        raise DataError(f"{folder}: no images in root/identity/image layout")
    names = {p: i for i, p in enumerate(dict.fromkeys(labels))}
    return np.stack(images), np.array([names[p] for p in labels], np.int64)


def pixel_probe(real: np.ndarray, synthetic: np.ndarray, identities: np.ndarray, *, test_fraction: float = 0.3,
                seed: int = 0, c: float = 1.0) -> dict:
    """Held-out accuracy of a logistic regression on pixels telling synthetic from real images.

    `real` and `synthetic` are uint8 [N, H, W, 3] made from *different* source photographs (so a
    pair cannot be matched), `identities` [2N] labels them (real first). People are split
    train/test; features are the pixels on 0..1.
    """
    from sklearn.linear_model import LogisticRegression

    if len(real) != len(synthetic) or len(identities) != 2 * len(real):
        raise ValueError("pixel_probe: expected equal real and synthetic counts and one identity per image")
    x = np.concatenate([real, synthetic]).reshape(2 * len(real), -1).astype(np.float32) / 255
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    people = np.unique(identities)
    rng = np.random.default_rng(seed)
    held = rng.permutation(people)[: max(1, round(test_fraction * len(people)))]
    test = np.isin(identities, held)
    if len(np.unique(y[test])) < 2 or len(np.unique(y[~test])) < 2:
        raise DataError("pixel_probe: a split lacks real or synthetic images; use more people")
    clf = LogisticRegression(C=c, max_iter=3000).fit(x[~test], y[~test])
    return {"accuracy": float(clf.score(x[test], y[test])), "n_train": int((~test).sum()),
            "n_test": int(test.sum()), "test_people": int(len(held))}
