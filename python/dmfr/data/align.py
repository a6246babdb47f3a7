"""5-point similarity alignment to the ArcFace 112x112 template (insightface face_align).

For users who bring landmarks (left eye, right eye, nose tip, left mouth corner, right mouth
corner, in pixel coordinates of the input image). insightface's `norm_crop` estimates a
similarity transform from the landmarks to `arcface_dst` by least squares (Umeyama 1991, as
skimage's SimilarityTransform) and warps with it; here the warp is Pillow's affine transform.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from dmfr.errors import DataError

# insightface python-package/insightface/utils/face_align.py `arcface_dst`, for 112x112.
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def template(image_size: int = 112) -> np.ndarray:
    """arcface_dst scaled as insightface's estimate_norm: x112 multiples scale, else 128-based
    with an 8-pixel x shift."""
    if image_size % 112 == 0:
        return ARCFACE_DST * (image_size / 112.0)
    ratio = image_size / 128.0
    dst = ARCFACE_DST * ratio
    dst[:, 0] += 8.0 * ratio
    return dst


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    Returns the 2x3 matrix M with dst ~= M[:, :2] @ src + M[:, 2] (Umeyama 1991, eq. 40-43).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    r = u @ np.diag(d) @ vt
    var_s = (sc ** 2).sum() / n
    if var_s == 0:
        raise DataError("landmarks are all the same point: no similarity transform")
    scale = (s * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r @ mu_s
    return m


def estimate_norm(landmarks, image_size: int = 112) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        raise DataError(f"expected 5 finite (x, y) landmarks, got shape {lm.shape}")
    return umeyama(lm, template(image_size))


def warp_affine(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp RGB uint8 HWC by the 2x3 forward matrix `m` (pixel centres at integer coordinates,
    as cv2.warpAffine) into a size x size image, bilinear, black outside."""
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    # Pillow samples output pixel centres at (x + 0.5, y + 0.5) and input centres likewise, so
    # shift the integer-centre inverse map into Pillow's half-pixel frame.
    lin, t = inv[:2, :2], inv[:2, 2]
    t_pil = t + 0.5 - lin @ np.array([0.5, 0.5])
    # Rounding to 1e-9 px drops least-squares float noise (~1e-15), so an exact placement
    # (identity, integer shift) samples pixel centres exactly instead of rounding a hair off.
    coeffs = tuple(float(c) for c in np.round(
        [lin[0, 0], lin[0, 1], t_pil[0], lin[1, 0], lin[1, 1], t_pil[1]], 9))
    out = Image.fromarray(img, mode="RGB").transform((size, size), Image.AFFINE, coeffs,
                                                     resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def norm_crop(img: np.ndarray, landmarks, image_size: int = 112) -> np.ndarray:
    """The aligned image_size x image_size face crop (insightface face_align.norm_crop)."""
    return warp_affine(img, estimate_norm(landmarks, image_size), image_size)
