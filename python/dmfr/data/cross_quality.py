"""`dmfr data cross-quality`: held-out LFW pairs with one side of each pair degraded by a camera.

In the spirit of XQLFW (Knoche, Hörmann, Rigoll, "Cross-Quality LFW", FG 2021: LFW pairs whose
two sides differ strongly in quality), the chosen folds of a pairs file are rewritten so that in
every pair one image (a seeded coin picks which) is replaced by a degraded copy. The degradation
is a *low-light hand-held camera*, deliberately not the training generator (dmfr.data.synth's
`quality`: Gaussian defocus, resize, hand-written JPEG core, additive Gaussian noise), so a gain
measured here is not the model recognising its own generator:
  1. underexposure: sRGB is linearised (IEC 61966-2-1) and scaled by an exposure e ∈ [0.15, 0.4];
  2. camera shake: a linear motion PSF of length L ∈ [3, 9] px at a uniform angle, convolved in
     linear light (scipy.ndimage.convolve);
  3. a small sensor: pixel-area binning by f ∈ {2, 3, 4} (Pillow's reduce), then photon shot noise
     (Poisson, 3000 photons at full well) and read noise (Gaussian, 3 e⁻), and the camera's gain
     1/e that brings the exposure back;
  4. the camera pipeline: sRGB encoding, bicubic upscaling back to the frame size, and a real
     JPEG encoder (Pillow/libjpeg, 4:2:0 chroma) at quality q ∈ [15, 40].
Each degraded image's parameters go to `degradations.csv`, so the protocol is reproducible and
auditable; the same --seed gives the same files.
"""
from __future__ import annotations

import csv
import io
import os
import shutil

import numpy as np
from PIL import Image

from dmfr.errors import DataError
from dmfr.data.staging import staged_folder

FULL_WELL = 3000.0  # photons at white: a small phone-class pixel
READ_NOISE = 3.0  # electrons (photons) RMS
EXPOSURE = (0.15, 0.4)
SHAKE_PX = (3, 9)
BINNING = (2, 3, 4)
JPEG_QUALITY = (15, 40)


def _to_linear(x: np.ndarray) -> np.ndarray:
    x = x / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _to_srgb(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, 0.0, 1.0)
    return np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(y, 1 / 2.4) - 0.055) * 255.0


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line PSF: `length` px long through the centre at `angle_deg`, drawn by
    sampling the segment finely and splatting bilinearly."""
    size = length if length % 2 else length + 1
    k = np.zeros((size, size), np.float64)
    c = (size - 1) / 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 8 * length)
    xs, ys = c + t * np.cos(np.deg2rad(angle_deg)), c - t * np.sin(np.deg2rad(angle_deg))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(k, (yi, xi), w)
    return k / k.sum()


def degrade(img: np.ndarray, rng: np.random.Generator) -> tuple[bytes, dict]:
    """RGB uint8 HWC → (JPEG bytes of the degraded image, its parameters)."""
    from scipy.ndimage import convolve

    h, w = img.shape[:2]
    grey = bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())
    p = {"exposure": float(rng.uniform(*EXPOSURE)), "shake_px": int(rng.integers(SHAKE_PX[0], SHAKE_PX[1] + 1)),
         "shake_angle": float(rng.uniform(0, 180)), "binning": int(rng.choice(BINNING)),
         "jpeg_quality": int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))}
    lin = _to_linear(img.astype(np.float64)) * p["exposure"]
    k = motion_kernel(p["shake_px"], p["shake_angle"])
    lin = np.stack([convolve(lin[..., c], k, mode="reflect") for c in range(3)], axis=-1)
    # Pixel-area binning: Pillow's reduce averages f x f blocks (mode F keeps the float signal).
    f = p["binning"]
    small = np.stack([np.asarray(Image.fromarray(lin[..., c].astype(np.float32), mode="F").reduce(f))
                      for c in range(3)], axis=-1).astype(np.float64)
    photons = rng.poisson(small * FULL_WELL) + rng.normal(0.0, READ_NOISE, small.shape)
    if grey:  # a monochrome sensor: one noise draw for the three equal channels
        photons = np.repeat(photons[..., :1], 3, axis=-1)
    gained = photons / (FULL_WELL * p["exposure"])  # auto-exposure gain
    small8 = np.round(_to_srgb(gained)).astype(np.uint8)
    up = Image.fromarray(small8, mode="RGB").resize((w, h), Image.BICUBIC)
    if grey:
        up = up.convert("L")
    out = io.BytesIO()
    up.save(out, format="JPEG", quality=p["jpeg_quality"], subsampling=2)
    return out.getvalue(), p


def degraded_name(key: str) -> str:
    stem, _ = os.path.splitext(key)
    return f"{stem}_xq.jpg"


def build_cross_quality(images: str, pairs_file: str, folds: list[int], out: str, seed: int = 0) -> dict:
    """Write OUT/images (the pairs' clean images and the degraded copies), OUT/pairs.txt (the
    chosen folds, one side of each pair degraded) and OUT/degradations.csv, all or nothing."""
    from dmfr.data.lfw import read_pairs_file
    from dmfr.data.images import load_image
    from dmfr.data.selection import pairs_identities_by_fold

    pairs = read_pairs_file(pairs_file)
    pairs_identities_by_fold(pairs_file)  # the held-out folds must share no identity with the others
    if not folds:
        raise DataError("--folds: name at least one fold")
    for f in folds:
        if not 1 <= f <= pairs.folds:
            raise DataError(f"--folds: {pairs_file} has folds 1..{pairs.folds}, not {f}")
    if os.path.exists(out) and os.listdir(out):
        raise DataError(f"{out}: already exists and is not empty; give a new folder")
    rng = np.random.default_rng(seed)
    with staged_folder(out) as tmp:
        lines, rows, copied = [], [], set()
        for k, (a, b, same) in enumerate(pairs.pairs):
            if pairs.fold_of(k) + 1 not in folds:
                continue
            side = int(rng.integers(2))  # which side of the pair is degraded
            keys = [a, b]
            for j, key in enumerate(keys):
                src = os.path.join(images, key)
                if j != side:
                    if key not in copied:
                        os.makedirs(os.path.dirname(os.path.join(tmp, "images", key)), exist_ok=True)
                        try:
                            shutil.copyfile(src, os.path.join(tmp, "images", key))
                        except OSError as exc:
                            raise DataError(f"{pairs_file}:{pairs.lines[k]}: image {key!r}: {exc.strerror}") from None
                        copied.add(key)
                    continue
                img = load_image(src)
                data, params = degrade(img, rng)
                name = degraded_name(key)
                n = 1
                while name in copied:  # the same image degraded again in another pair: a new draw
                    n += 1
                    name = f"{os.path.splitext(key)[0]}_xq{n}.jpg"
                copied.add(name)
                path = os.path.join(tmp, "images", name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(data)
                rows.append({"image": name, "source": key, **params})
                keys[j] = name
            ident = [kk.split("/", 1) for kk in keys]
            if same:
                lines.append(f"{ident[0][0]}\t{ident[0][1]}\t{ident[1][1]}")
            else:
                lines.append(f"{ident[0][0]}\t{ident[0][1]}\t{ident[1][0]}\t{ident[1][1]}")
        with open(os.path.join(tmp, "pairs.txt"), "w", encoding="utf-8") as fh:
            fh.write(f"{len(folds)}\t{pairs.pairs_per_fold}\n" + "\n".join(lines) + "\n")
        with open(os.path.join(tmp, "degradations.csv"), "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {"pairs": len(lines), "folds": folds, "degraded_images": len(rows), "out": out}
