"""Batch image operations in NumPy for the renderer and the built-in generators.

Images are float32 [B, H, W, 3] on the 0..255 scale unless a function says otherwise. Each
operation is vectorised over the batch; level/strength 0 returns the input unchanged.
"""
from __future__ import annotations

import numpy as np


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders; sigma in pixels."""
    if sigma <= 0:
        return x
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    h, w = x.shape[1:3]
    pad = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect" if r < min(h, w) else "edge")
    rows = sum(k[i] * pad[:, i : i + h, :, :] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, :, i : i + w, :] for i in range(2 * r + 1))


def _linear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear resampling matrix [n_out, n_in] (pixel-centre aligned, as OpenCV INTER_LINEAR)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Box-average downsampling matrix [n_out, n_in] (as OpenCV INTER_AREA)."""
    edges = np.linspace(0, n_in, n_out + 1)
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        a, b = edges[i], edges[i + 1]
        for j in range(int(np.floor(a)), int(np.ceil(b))):
            m[i, j] = max(0.0, min(b, j + 1) - max(a, j))
        m[i] /= m[i].sum()
    return m


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """Square resize: area averaging when shrinking, bilinear when enlarging."""
    h, w = x.shape[1:3]
    mh = _area_matrix(size, h) if size < h else _linear_matrix(size, h)
    mw = _area_matrix(size, w) if size < w else _linear_matrix(size, w)
    return np.einsum("ih,bhwc,jw->bijc", mh, x, mw, optimize=True)


def down_up(x: np.ndarray, factor: float) -> np.ndarray:
    """Lose resolution: shrink by `factor` (area) and enlarge back (bilinear)."""
    if factor <= 1:
        return x
    h, w = x.shape[1:3]
    sh, sw = max(2, round(h / factor)), max(2, round(w / factor))
    small = np.einsum("ih,bhwc,jw->bijc", _area_matrix(sh, h), x, _area_matrix(sw, w), optimize=True)
    return np.einsum("ih,bhwc,jw->bijc", _linear_matrix(h, sh), small, _linear_matrix(w, sw), optimize=True)


# The JPEG standard's (ITU T.81 Annex K) luminance and chrominance quantisation tables.
_Q_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
_Q_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, np.float32).reshape(8, 8)


def _dct_matrix() -> np.ndarray:
    n = np.arange(8)
    m = np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT = _dct_matrix()


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """JPEG's lossy core (YCbCr, 8×8 DCT, the standard tables at `quality`), without entropy coding.

    The scaling of the tables by quality follows libjpeg's jpeg_quality_scaling.
    """
    quality = int(np.clip(quality, 1, 100))
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    b, h, w, _ = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    r, g, bl = xp[..., 0], xp[..., 1], xp[..., 2]
    ycc = np.stack([0.299 * r + 0.587 * g + 0.114 * bl - 128,
                    -0.168736 * r - 0.331264 * g + 0.5 * bl,
                    0.5 * r - 0.418688 * g - 0.081312 * bl], -1)
    H, W = h + ph, w + pw
    blocks = ycc.reshape(b, H // 8, 8, W // 8, 8, 3).transpose(0, 1, 3, 5, 2, 4)  # b,by,bx,c,8,8
    coef = _DCT @ blocks @ _DCT.T
    q = np.stack([_Q_LUMA, _Q_CHROMA, _Q_CHROMA])[None, None, None]
    q = np.clip(np.floor((q * scale + 50) / 100), 1, 255)
    coef = np.round(coef / q) * q
    blocks = _DCT.T @ coef @ _DCT
    ycc = blocks.transpose(0, 1, 4, 2, 5, 3).reshape(b, H, W, 3)
    y, cb, cr = ycc[..., 0] + 128, ycc[..., 1], ycc[..., 2]
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
    return np.clip(rgb[:, :h, :w], 0, 255)


def degrade(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Camera-quality loss at `level` in [0, 1]: blur, downscale, JPEG, sensor noise.

    Used both by the renderer (real low-quality images) and by the `quality` generator (its g).
    At 112 px, level 1 is σ = 1.5 px blur, a 3× resolution loss, JPEG quality 20 and noise σ = 6.
    """
    if level <= 0:
        return x
    size_scale = x.shape[1] / 112
    x = gaussian_blur(x, 1.5 * level * size_scale)
    x = down_up(x, 1 + 2 * level)
    x = jpeg(x, round(90 - 70 * level))
    x = x + rng.normal(0, 6 * level, x.shape).astype(np.float32)
    return np.clip(x, 0, 255)


def bilinear_sample(x: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Sample x [B, H, W, C] at pixel coordinates sx, sy [B, H', W'] (clamped to the border)."""
    b, h, w, c = x.shape
    sx = np.clip(sx, 0, w - 1)
    sy = np.clip(sy, 0, h - 1)
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (sx - x0)[..., None].astype(np.float32)
    fy = (sy - y0)[..., None].astype(np.float32)
    flat = x.reshape(b, h * w, c)
    bi = np.arange(b)[:, None, None]

    def at(yy, xx):
        return flat[bi, yy * w + xx]

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bot = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bot * fy


def sample_rows(x: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Linear interpolation along each row: x [B, H, W, C] at column coordinates sx [B, H, W]."""
    b, h, w, c = x.shape
    sx = np.clip(sx, 0, w - 1).astype(np.float32)
    x0f = np.floor(sx)
    f = (sx - x0f)[..., None]
    row_start = (np.arange(b * h, dtype=np.int64) * w).reshape(b, h, 1)
    i0 = x0f.astype(np.int64) + row_start
    i1 = np.minimum(x0f.astype(np.int64) + 1, w - 1) + row_start
    flat = x.reshape(-1, c)
    a = flat[i0.ravel()].reshape(b, h, w, c)
    return a + (flat[i1.ravel()].reshape(b, h, w, c) - a) * f
