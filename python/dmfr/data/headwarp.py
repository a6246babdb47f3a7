"""A yaw turn of a face photograph from a depth proxy placed by its five landmarks.

PRNet (Feng et al., ECCV 2018), the paper's pose generator, fits a 3-D face and re-renders it
turned. Without a 3-D model we give the image a smooth face-shaped height field h(x, y) — a
head ellipsoid plus a nose ridge, placed and sized from the five ArcFace landmarks (eyes, nose
tip, mouth corners; arcface_torch's `arcface_dst` template when none are given) and smoothed so
that its slope is bounded and it fades to 0 off the head (no seam where the head meets the
background) — and turn it about the vertical axis through the face's midline, orthographically:

    x' = x + m(x, y)·(cos θ − 1)·(x − c) − sin θ · h(x, y),   y' = y

with m the (smooth) head mask and c the midline. Off the head (h = m = 0) pixels stay. A positive
θ moves the nose toward image left, the renderer's convention (dmfr.data.render). The output is
the inverse of this map per row: where the far side folds behind the face (x' not increasing)
only the surface nearest the viewer is kept; the near side, which the source saw at a grazing
angle, is stretched smoothly from what the source shows there, so the filled side has no edge.
The resampling is scipy.ndimage.map_coordinates (cubic spline).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# arcface_torch's five-point template for 112×112 crops: left eye, right eye, nose tip, left and
# right mouth corner (insightface utils/face_align.py `arcface_dst`).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)

# Head proportions in units of the interocular distance d and eye-to-mouth distance e (adult
# anthropometry, Farkas 1994: face breadth ≈ 2.3 d, eyes-to-chin ≈ 1.9 e), and depths.
HEAD_HALF_WIDTH = 1.15  # × d
HEAD_CENTRE_BELOW_EYES = 0.45  # × e
HEAD_HALF_HEIGHT = 1.5  # × e
HEAD_DEPTH = 1.0  # × half-width: the face's front half is about as deep as it is half wide
NOSE_HEIGHT = 0.35  # × d, the nose tip above the face's surface
PROFILE = 3.0  # super-ellipse exponent of the head's cross-section (2: an ellipse)
SMOOTH = 0.15  # × half-width: Gaussian σ that rounds the head's rim
FEATHER = 0.1  # × d: Gaussian σ (px) that softens occlusion edges in the source map


def template_landmarks(width: int, height: int) -> np.ndarray:
    """The ArcFace template scaled to a width × height image (the whole image is the crop)."""
    return ARCFACE_TEMPLATE * np.array([width / 112, height / 112], np.float32)


def depth_proxy(landmarks: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Height field h [H, W] (pixels), head mask m [H, W] in [0, 1] and the midline column c."""
    lm = np.asarray(landmarks, np.float32)
    eyes, nose, mouth = (lm[0] + lm[1]) / 2, lm[2], (lm[3] + lm[4]) / 2
    d = float(np.linalg.norm(lm[1] - lm[0]))
    e = float(np.linalg.norm(mouth - eyes))
    c = float((eyes[0] + mouth[0]) / 2)
    ax, ay = HEAD_HALF_WIDTH * d, HEAD_HALF_HEIGHT * e
    cy = float(eyes[1] + HEAD_CENTRE_BELOW_EYES * e)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - c) / ax) ** 2 + ((yy - cy) / ay) ** 2
    # A super-ellipse profile: flat across the eyes and mouth, turning at the cheeks.
    skull = HEAD_DEPTH * ax * np.maximum(0.0, 1.0 - r2 ** (PROFILE / 2)) ** (1 / PROFILE)
    # The nose: a ridge from between the eyes to the tip, highest at the tip.
    t = np.clip((yy - eyes[1]) / max(1.0, nose[1] - eyes[1]), 0, 1.2)
    ridge_x = eyes[0] + (nose[0] - eyes[0]) * t
    nose_h = NOSE_HEIGHT * d * t ** 1.5 * np.exp(-0.5 * ((xx - ridge_x) / (0.12 * d)) ** 2)
    nose_h *= np.exp(-0.5 * (np.maximum(0.0, yy - nose[1]) / (0.12 * d)) ** 2)
    sigma = SMOOTH * ax
    h = ndimage.gaussian_filter(skull, sigma, mode="nearest") + ndimage.gaussian_filter(nose_h, 1.0, mode="nearest")
    m = ndimage.gaussian_filter((r2 < 1).astype(np.float32), sigma, mode="nearest")
    return h.astype(np.float32), m.astype(np.float32), c


def forward_columns(h: np.ndarray, m: np.ndarray, c: float, degrees: float) -> np.ndarray:
    """x' for every source pixel [H, W]: where each column lands after the turn."""
    th = np.deg2rad(degrees)
    x = np.arange(h.shape[1], dtype=np.float32)[None, :]
    return x + m * (np.cos(th) - 1) * (x - c) - np.sin(th) * h


def source_columns(h: np.ndarray, m: np.ndarray, c: float, degrees: float, feather: float = 0.0) -> np.ndarray:
    """For every output pixel [H, W], the source column it shows (the inverse map, per row)."""
    fwd = forward_columns(h, m, c, degrees).astype(np.float64)
    width = h.shape[1]
    x = np.arange(width, dtype=np.float64)
    # Visibility: walking from the near side toward the far side, a point that lands behind one
    # already seen (x' past the running extreme) is hidden behind the face.
    if degrees > 0:  # far side on the left: walk right to left
        vis = np.minimum.accumulate(fwd[:, ::-1], axis=1)[:, ::-1]
    else:
        vis = np.maximum.accumulate(fwd, axis=1)
    vis = vis + x[None, :] * 1e-6  # strictly increasing for np.interp
    out = np.empty_like(fwd)
    for r in range(len(vis)):
        out[r] = np.interp(x, vis[r], x)
    # Feathered occlusion: where the far side folds away the source column jumps; smoothing the
    # map along the row turns the jump into a short, steep squeeze (a foreshortened strip of
    # cheek) instead of a cut. Where the map is linear, smoothing leaves it as it is.
    if feather > 0:
        out = ndimage.gaussian_filter1d(out, feather, axis=1, mode="nearest")
    return out.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _template_proxy(height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The template's depth proxy, built once per image size (every aligned crop shares it)."""
    return depth_proxy(template_landmarks(width, height), height, width)


def turn(image: np.ndarray, degrees: float, landmarks: np.ndarray | None = None) -> np.ndarray:
    """float32 [H, W, 3] (0..255) turned by `degrees` of yaw → float32 [H, W, 3]."""
    if degrees == 0:
        return image
    hgt, wid = image.shape[:2]
    lm = template_landmarks(wid, hgt) if landmarks is None else landmarks
    h, m, c = _template_proxy(hgt, wid) if landmarks is None else depth_proxy(lm, hgt, wid)
    feather = FEATHER * float(np.linalg.norm(lm[1] - lm[0]))
    sx = source_columns(h, m, c, degrees, feather)
    sy = np.broadcast_to(np.arange(hgt, dtype=np.float32)[:, None], sx.shape)
    out = np.stack([ndimage.map_coordinates(image[..., k], [sy, sx], order=3, mode="nearest")
                    for k in range(image.shape[2])], -1)
    return np.clip(out, 0, 255)
