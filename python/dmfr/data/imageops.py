"""Batch resizing in NumPy for the procedural renderer (dmfr.data.render).

Images are float32 [B, H, W, 3] on the 0..255 scale. Hand-written because the renderer resizes
float batches in one einsum (no uint8 round trip per image); camera degradations live in
dmfr.data.camera (Pillow).
"""
from __future__ import annotations

import numpy as np


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
