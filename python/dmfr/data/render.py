"""The procedural face renderer behind the built-in benchmark (docs/domains.md).

A face is an ellipsoid head ray-cast orthographically under a yaw rotation. Everything that makes
one person differ from another lives on the head's surface in the head's own frame (head shape,
eye/brow/nose/mouth layout, colours, a low-frequency skin pattern), so a real out-of-plane
rotation shows the far side of the face correctly — unlike a 2-D warp of an image, which is what
the `pose` generator (dmfr.data.synth) does, as a stand-in for PRNet's re-rendering.

Identity lives in a latent code z ~ N(0, I) (`CODE_DIM` values); each face parameter is a fixed
squashing of one code value into its range, so z = 0 is the mean face. Nuisance factors (yaw,
lighting, expression, background, alignment jitter) are per image. Rendering is vectorised over a
batch of images in NumPy; `render` returns uint8 [B, H, W, 3] RGB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmfr.data import imageops

# One column of the code per parameter, in this order; each maps to [lo, hi] via a logistic.
_PARAMS: list[tuple[str, float, float]] = [
    ("head_ax", 0.56, 0.70),  # head half-width
    ("head_ay", 0.80, 0.95),  # head half-height
    ("skin_r", 0.55, 0.95),
    ("skin_g", 0.40, 0.78),
    ("skin_b", 0.30, 0.68),
    ("hair_r", 0.05, 0.70),
    ("hair_g", 0.04, 0.50),
    ("hair_b", 0.03, 0.35),
    ("hairline", 0.30, 0.65),  # Y (unit-sphere frame) where hair begins
    ("eye_x", 0.28, 0.44),
    ("eye_y", 0.08, 0.26),
    ("eye_w", 0.10, 0.18),
    ("eye_h", 0.045, 0.08),
    ("iris_r", 0.10, 0.55),
    ("iris_g", 0.08, 0.50),
    ("iris_b", 0.05, 0.60),
    ("brow_dy", 0.10, 0.20),
    ("brow_t", 0.025, 0.06),
    ("brow_tilt", -0.25, 0.25),
    ("nose_w", 0.06, 0.14),
    ("nose_y", -0.32, -0.18),
    ("mouth_y", -0.62, -0.45),
    ("mouth_w", 0.18, 0.34),
    ("lip_t", 0.025, 0.06),
    ("lip_r", 0.45, 0.85),
    ("cheek", 0.0, 0.25),  # blush strength
    ("mole_x", -0.6, 0.6),
    ("mole_y", -0.5, 0.3),
    ("mole_s", 0.0, 1.0),
]
# A low-frequency skin pattern: _TEXTURE_TERMS cosines in the head frame, 3 code values each
# (amplitude, phase, frequency mix) — identity information that is not a landmark.
_TEXTURE_TERMS = 6
CODE_DIM = len(_PARAMS) + 3 * _TEXTURE_TERMS
# Fixed texture directions, shared by every identity (drawn once from a constant seed).
_TEX_DIRS = np.random.default_rng(20210202).normal(size=(_TEXTURE_TERMS, 3)).astype(np.float32)

HEAD_AZ = 0.70  # head half-depth (fixed; the pose generator assumes it too)


@dataclass
class Nuisance:
    """Per-image conditions, each an array of length B."""

    yaw: np.ndarray  # degrees, positive turns the face to the image's left
    light_az: np.ndarray  # degrees
    light_el: np.ndarray  # degrees
    ambient: np.ndarray  # 0..1
    smile: np.ndarray  # -0.3..1
    mouth_open: np.ndarray  # 0..1
    squint: np.ndarray  # 0..0.6
    brow_raise: np.ndarray  # 0..1
    background: np.ndarray  # [B, 3] RGB 0..1
    shift: np.ndarray  # [B, 2] alignment jitter in normalised units

    def __len__(self) -> int:
        return len(self.yaw)

    def take(self, idx: np.ndarray) -> "Nuisance":
        return Nuisance(**{k: v[idx] for k, v in self.__dict__.items()})


def sample_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, CODE_DIM)).astype(np.float32)


def sample_nuisance(rng: np.random.Generator, n: int, yaw: np.ndarray) -> Nuisance:
    """Lighting, expression, background and jitter for n images of the given yaws."""
    return Nuisance(
        yaw=np.asarray(yaw, np.float32),
        light_az=rng.uniform(-60, 60, n).astype(np.float32),
        light_el=rng.uniform(-10, 45, n).astype(np.float32),
        ambient=rng.uniform(0.35, 0.65, n).astype(np.float32),
        smile=rng.uniform(-0.3, 1.0, n).astype(np.float32),
        mouth_open=np.clip(rng.uniform(-0.6, 1.0, n), 0, 1).astype(np.float32),
        squint=np.clip(rng.uniform(-0.3, 0.6, n), 0, 1).astype(np.float32),
        brow_raise=rng.uniform(0, 1, n).astype(np.float32),
        background=(rng.uniform(0.2, 0.8, (n, 1)) + rng.uniform(-0.08, 0.08, (n, 3))).astype(np.float32),
        shift=rng.normal(0, 0.02, (n, 2)).astype(np.float32),
    )


def face_params(codes: np.ndarray) -> dict[str, np.ndarray]:
    """Map latent codes [B, CODE_DIM] to named face parameters, each [B, 1, 1]."""
    squash = 1.0 / (1.0 + np.exp(-1.2 * codes[:, : len(_PARAMS)]))
    out = {name: (lo + (hi - lo) * squash[:, i])[:, None, None] for i, (name, lo, hi) in enumerate(_PARAMS)}
    tex = codes[:, len(_PARAMS):].reshape(-1, _TEXTURE_TERMS, 3)
    out["tex_amp"] = 0.05 * np.tanh(tex[:, :, 0])  # [B, T]
    out["tex_phase"] = np.pi * np.tanh(tex[:, :, 1])
    out["tex_freq"] = 2.0 + 1.5 * np.tanh(tex[:, :, 2])
    return out


def _blob(x: np.ndarray, y: np.ndarray, cx, cy, sx, sy) -> np.ndarray:
    """A soft-edged ellipse mask (1 inside, smooth falloff)."""
    d = ((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2
    return np.clip(1.5 - d, 0, 1) ** 2


def _paint(alb: np.ndarray, mask: np.ndarray, colour) -> None:
    """Blend `colour` over `alb` in place where `mask` ([..., 1], 0..1) is on."""
    alb += mask * (colour - alb)


def _smooth_step(v: np.ndarray, edge: float = 0.04) -> np.ndarray:
    return np.clip(v / edge + 0.5, 0, 1)


def render(codes: np.ndarray, nuisance: Nuisance, size: int, chunk: int = 32) -> np.ndarray:
    """Render B faces: codes [B, CODE_DIM] with per-image nuisance → uint8 [B, size, size, 3]."""
    out = np.empty((len(codes), size, size, 3), np.uint8)
    inner = max(size, 64)  # small outputs are rendered at 64 px and area-averaged (anti-aliasing)
    for s in range(0, len(codes), chunk):
        e = min(s + chunk, len(codes))
        img = _render_chunk(codes[s:e], nuisance.take(np.arange(s, e)), inner)
        if inner != size:
            img = imageops.resize(img, size)
        out[s:e] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _render_chunk(codes: np.ndarray, nz: Nuisance, size: int) -> np.ndarray:
    p = face_params(codes)
    b = len(codes)
    lin = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    px = lin[None, None, :] - nz.shift[:, 0, None, None]  # x right
    py = -lin[None, :, None] - nz.shift[:, 1, None, None] + 0.02  # y up
    px, py = np.broadcast_arrays(px, py)
    th = np.deg2rad(nz.yaw)[:, None, None]
    c, s = np.cos(th), np.sin(th)
    ax, ay, az = p["head_ax"], p["head_ay"], HEAD_AZ
    # Ray (px, py, t) toward the viewer at +z; head frame q = R_y(-yaw) p.
    qa = (s / ax) ** 2 + (c / az) ** 2
    qb = 2 * px * c * s * (1 / ax**2 - 1 / az**2)
    qc = (c * px / ax) ** 2 + (s * px / az) ** 2 + (py / ay) ** 2 - 1
    disc = qb * qb - 4 * qa * qc
    hit = disc > 0
    t = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
    qx = c * px + s * t
    qz = -s * px + c * t
    X, Y, Z = qx / ax, py / ay, qz / az  # unit-sphere coordinates in the head frame

    # Albedo in the head frame.
    skin = np.stack([p["skin_r"], p["skin_g"], p["skin_b"]], -1)  # [B,1,1,3]
    hair_c = np.stack([p["hair_r"], p["hair_g"], p["hair_b"]], -1)
    tex = np.zeros_like(X)
    for k in range(_TEXTURE_TERMS):
        d = _TEX_DIRS[k]
        tex += p["tex_amp"][:, k, None, None] * np.cos(
            p["tex_freq"][:, k, None, None] * (d[0] * X + d[1] * Y + d[2] * Z) + p["tex_phase"][:, k, None, None]
        )
    alb = skin * (1 + tex)[..., None]
    front = _smooth_step(Z - 0.05, 0.1)[..., None]  # facial features only on the front
    cheek = p["cheek"][..., None] * (_blob(X, Y, -0.45, -0.2, 0.18, 0.14) + _blob(X, Y, 0.45, -0.2, 0.18, 0.14))[..., None]
    _paint(alb, cheek * front, np.array([0.85, 0.35, 0.35], np.float32))
    mole = (p["mole_s"] > 0.5) * _blob(X, Y, p["mole_x"], p["mole_y"], 0.035, 0.035)
    alb *= 1 - 0.7 * (mole * front[..., 0])[..., None]

    # Eyes: white, iris; squint narrows them.
    ex, ey = p["eye_x"], p["eye_y"]
    eh = p["eye_h"] * (1 - nz.squint[:, None, None])
    for sx in (-1.0, 1.0):
        white = _blob(X, Y, sx * ex, ey, p["eye_w"], eh)[..., None] * front
        _paint(alb, white, 0.92)
        iris_c = np.stack([p["iris_r"], p["iris_g"], p["iris_b"]], -1)
        iris = _blob(X, Y, sx * ex, ey, 0.5 * p["eye_w"], eh)[..., None] * front
        _paint(alb, iris, iris_c)
        pupil = _blob(X, Y, sx * ex, ey, 0.2 * p["eye_w"], 0.6 * eh)[..., None] * front
        _paint(alb, pupil, 0.05)
        by = ey + p["brow_dy"] + 0.06 * nz.brow_raise[:, None, None] + sx * p["brow_tilt"] * (X - sx * ex)
        brow = _blob(X, Y, sx * ex, by, 1.3 * p["eye_w"], p["brow_t"])[..., None] * front
        _paint(alb, brow, hair_c)
    # Nose: shaded sides and nostrils.
    nose_side = (_blob(X, Y, -p["nose_w"], (ey + p["nose_y"]) / 2, 0.03, 0.2)
                 + _blob(X, Y, p["nose_w"], (ey + p["nose_y"]) / 2, 0.03, 0.2))
    nostril = _blob(X, Y, -0.6 * p["nose_w"], p["nose_y"], 0.035, 0.02) + _blob(X, Y, 0.6 * p["nose_w"], p["nose_y"], 0.035, 0.02)
    alb *= 1 - (0.25 * nose_side + 0.7 * nostril)[..., None] * front
    # Mouth: lips curved by the smile; an open mouth shows a dark gap.
    my = p["mouth_y"] + nz.smile[:, None, None] * 0.08 * (X / p["mouth_w"]) ** 2
    lips_c = np.concatenate([p["lip_r"][..., None], 0.45 * p["lip_r"][..., None], 0.4 * p["lip_r"][..., None]], -1)
    open_h = 0.045 * nz.mouth_open[:, None, None]
    lips = _blob(X, Y, 0, my, p["mouth_w"], p["lip_t"] + open_h)[..., None] * front
    _paint(alb, lips, lips_c)
    gap = _blob(X, Y, 0, my, 0.8 * p["mouth_w"], open_h + 1e-4)[..., None] * front
    _paint(alb, gap, 0.08)
    # Hair above the hairline and over the back of the head.
    hair = np.maximum(_smooth_step(Y - p["hairline"] - 0.08 * X**2), _smooth_step(-Z - 0.1, 0.2))[..., None]
    _paint(alb, hair, hair_c)

    # Lambertian shading: the normal of the ellipsoid, rotated into the view frame.
    nx_h, ny_h, nz_h = qx / ax**2, py / ay**2, qz / az**2
    norm = np.sqrt(nx_h**2 + ny_h**2 + nz_h**2) + 1e-6
    nx = (c * nx_h - s * nz_h) / norm
    nzv = (s * nx_h + c * nz_h) / norm
    ny = ny_h / norm
    la, le = np.deg2rad(nz.light_az)[:, None, None], np.deg2rad(nz.light_el)[:, None, None]
    lx, ly, lz = np.sin(la) * np.cos(le), np.sin(le), np.cos(la) * np.cos(le)
    amb = nz.ambient[:, None, None]
    shade = amb + (1 - amb) * np.clip(nx * lx + ny * ly + nzv * lz, 0, 1)
    face = alb * shade[..., None]

    # Background: a flat colour with a soft vertical gradient; the head edge is anti-aliased.
    bg = nz.background[:, None, None, :] * (1 - 0.15 * py[..., None])
    edge = np.clip(disc / (4 * qa) * size * 0.5, 0, 1)[..., None] * hit[..., None]
    return face * edge + bg * (1 - edge)  # float 0..1
