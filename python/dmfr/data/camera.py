"""Camera-quality loss through the imaging library: defocus, resolution loss, sensor noise, JPEG.

Used by the `quality` generator (its g, dmfr.data.synth) and by the procedural renderer (its real
low-quality images). The operations are Pillow's own — `ImageFilter.GaussianBlur`, `Image.resize`
with its BOX (area) and BICUBIC filters, and the libjpeg encoder with 4:2:0 chroma subsampling —
rather than hand-written versions, so the artefacts (8×8 blocking, chroma bleeding, ringing) are
the ones real JPEG files carry. The order is the classical degradation model of Real-ESRGAN
(Wang et al., ICCVW 2021, § 3.1): blur → downsample → noise → JPEG; the image is then shown at
its original size again (bicubic), as a face crop cut from a low-resolution photo is.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# At level 1 and 112 px (scaled with the image size): defocus σ, resolution loss, JPEG quality,
# noise σ (0..255). Level 0 is the identity.
BLUR_SIGMA = 1.5
RESOLUTION_LOSS = 2.0  # the image is shrunk by 1 + RESOLUTION_LOSS·level
JPEG_QUALITY = (90, 20)  # quality at level 0 and 1, linear in between
NOISE_SIGMA = 6.0


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Encode and decode with libjpeg at `quality`, 4:2:0 chroma subsampling (Pillow's
    `subsampling=2`, what cameras and most web images use)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(np.clip(quality, 1, 95)), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def degrade_image(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 [H, W, 3] image at degradation `level` in [0, 1] → uint8, same size."""
    if level <= 0:
        return img
    h, w = img.shape[:2]
    scale = h / 112  # the constants are given at 112 px
    pil = Image.fromarray(img, mode="RGB")
    sigma = BLUR_SIGMA * level * scale
    if sigma > 0:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=sigma))  # Pillow's radius is σ
    factor = 1 + RESOLUTION_LOSS * level
    small = (max(2, round(w / factor)), max(2, round(h / factor)))
    pil = pil.resize(small, Image.BOX)  # area averaging: the sensor integrates over a pixel
    arr = np.asarray(pil, dtype=np.float32)
    arr = arr + rng.normal(0, NOISE_SIGMA * level, arr.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    q0, q1 = JPEG_QUALITY
    pil = jpeg(pil, round(q0 + (q1 - q0) * level))
    return np.asarray(pil.resize((w, h), Image.BICUBIC), dtype=np.uint8)


def degrade(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """A batch float32 [B, H, W, 3] on 0..255 at `level` → float32; level 0 returns x unchanged."""
    if level <= 0:
        return x
    u8 = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    return np.stack([degrade_image(im, level, rng) for im in u8]).astype(np.float32)
