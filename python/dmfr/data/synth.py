"""The built-in generators: `pose` and `quality`, each with its own synthetic modality ε.

The paper (section "Modality of the Synthetic Data") writes a synthetic sample as
x' = x ⊕ g(x, Δc) ⊕ ε(x): g is the wanted condition change (g(x, 0) = 0), ε the generator's fixed
mode. Here g is `pose` (a yaw turn of a landmark-placed depth proxy by Δc degrees,
dmfr.data.headwarp, a stand-in for PRNet's 3-D rotation) or `quality` (blur, downscale, noise and
JPEG at level Δc through Pillow, dmfr.data.camera, a stand-in for the paper's CycleGAN blur), and
each generator stamps its own documented fingerprint ε with a `strength` (0 = none). ε is meant
as a real generator's artefacts are: a faint, consistent signature a network can learn, not noise
a person sees first — calibrated on photographs (docs/domains.md). It is content-dependent
(smoothing, a multiplicative periodic pattern like the spectral peaks of transposed-convolution
upsampling, a multiplicative texture, a contrast/tint change), because a fixed additive pattern is
trivially subtracted by a CNN (issue 4); and g can regress toward a mean face (`identity_loss`),
so synthetic samples carry less identity.

`dmfr data synth` (add_arguments / run below) applies a generator to a folder of real images and
writes a generative domain with its manifest (docs/domains.md).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from dmfr.data import camera, headwarp, manifest
from dmfr.errors import ConfigError, DataError


@dataclass(frozen=True)
class Fingerprint:
    """A generator's modality ε; every term is scaled by the strength s (s = 0: no change).

    ε(x) = tint·s + m + (1 + contrast·s)·(x̃ − m),  x̃ = blur_σ·s(x) · (1 + s·(period_amp·P_k + texture_amp·T))
    with m the image's mean, P_k a zero-mean, unit-variance grid of period k (the uneven kernel
    overlap that a stride-k transposed convolution leaves, i.e. periodic spectral peaks) and T a
    fixed unit-variance band-pass noise texture drawn from `seed`. σ, k and T's band are given at
    112 px and scale with the image, so the signature covers the same part of the face at any size.
    """

    blur: float  # σ in pixels at 112 px and s = 1
    period: float  # P_k period in pixels at 112 px
    period_amp: float
    texture_amp: float
    contrast: float
    tint: tuple[float, float, float]  # 0..255 units at s = 1
    seed: int

    def pattern(self, size: int) -> np.ndarray:
        """The fixed multiplicative pattern (period grid + texture), float32 [size, size, 1]."""
        scale = size / 112
        k = max(2.0, self.period * scale)  # at least the Nyquist period
        i = np.arange(size) + 0.5
        wave = np.cos(2 * np.pi * i / k)
        grid = wave[:, None] + wave[None, :] + wave[:, None] * wave[None, :]
        grid = (grid - grid.mean()) / grid.std()
        rng = np.random.default_rng(self.seed)
        noise = rng.standard_normal((size, size)).astype(np.float32)
        # Band-pass: difference of Gaussians in the Fourier domain, periods ≈ 3–12 px at 112 px.
        f = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
        band = np.exp(-f * (2 * np.pi * 1.0 * scale) ** 2 / 2) - np.exp(-f * (2 * np.pi * 4.0 * scale) ** 2 / 2)
        tex = np.real(np.fft.ifft2(np.fft.fft2(noise) * band)).astype(np.float32)
        tex = (tex - tex.mean()) / tex.std()
        return (self.period_amp * grid + self.texture_amp * tex).astype(np.float32)[:, :, None]

    def apply(self, x: np.ndarray, strength: float) -> np.ndarray:
        """x float32 [B, H, W, 3] on 0..255 → the same with ε stamped at `strength`."""
        if strength <= 0:
            return x
        size = x.shape[1]
        sigma = self.blur * strength * size / 112
        x = ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="reflect")
        x = x * (1 + strength * self.pattern(size))[None]
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        x = m + (1 + self.contrast * strength) * (x - m) + strength * np.asarray(self.tint, np.float32)
        return np.clip(x, 0, 255)


# Calibrated on photographs (docs/domains.md, bench/fingerprint_calibration.py): at s = 1 the
# signature is hard to see yet a linear probe on pixels still tells it from real images.
POSE_FINGERPRINT = Fingerprint(blur=0.4, period=4, period_amp=0.012, texture_amp=0.015, contrast=0.03,
                               tint=(1.5, 0.0, -1.5), seed=101)
QUALITY_FINGERPRINT = Fingerprint(blur=0.3, period=3, period_amp=0.016, texture_amp=0.015, contrast=-0.03,
                                  tint=(0.0, 0.75, 1.5), seed=202)


class Generator:
    """A built-in generator: g (the condition change Δc) then ε (its fingerprint)."""

    name: str
    unit: str  # what Δc measures
    full_delta: float  # |Δc| at which identity_loss applies in full
    fingerprint: Fingerprint

    def change(self, x: np.ndarray, delta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """g: apply the condition change Δc per image. x float32 [B, H, W, 3]."""
        raise NotImplementedError

    def apply(
        self,
        images: np.ndarray,
        delta: np.ndarray,
        *,
        strength: float = 1.0,
        identity_loss: float = 0.0,
        mean_face: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """uint8 [B, H, W, 3] real images and Δc [B] → uint8 synthetic images.

        identity_loss w in [0, 1] blends the source toward the mean face (then applies g) by
        w·min(1, |Δc| / full_delta), so that g(x, 0) = 0 as the paper assumes; Δc = 0 at
        strength 0 returns the source exactly.
        """
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
        rng = rng or np.random.default_rng(0)
        delta = np.broadcast_to(np.asarray(delta, np.float32), (len(images),))
        x = images.astype(np.float32)
        out = x.copy()
        moved = delta != 0
        if moved.any():
            src = x[moved]
            if identity_loss > 0 and mean_face is not None:
                # Blending before g equals blending the changed image with the changed mean face
                # for the (linear) pose warp; for quality it is the same idea: the loss comes first.
                w = (identity_loss * np.minimum(1.0, np.abs(delta[moved]) / self.full_delta))[:, None, None, None]
                src = (1 - w) * src + w * mean_face.astype(np.float32)[None]
            out[moved] = self.change(src, delta[moved], rng)
        out = self.fingerprint.apply(out, strength)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class PoseGenerator(Generator):
    """Yaw by Δc degrees (dmfr.data.headwarp): a face-shaped depth proxy placed from the ArcFace
    five-point template (the inputs are aligned crops) is turned about the face's vertical
    midline and the image re-projected — a 2-D stand-in for PRNet's 3-D re-rendering."""

    name = "pose"
    unit = "degrees"
    full_delta = 30.0
    fingerprint = POSE_FINGERPRINT

    def change(self, x, delta, rng):
        return np.stack([headwarp.turn(im, float(d)) for im, d in zip(x, delta)])


class QualityGenerator(Generator):
    """Camera-quality loss at level Δc in [0, 1] (dmfr.data.camera: Pillow's blur, resampling and
    libjpeg), a stand-in for the paper's CycleGAN blur."""

    name = "quality"
    unit = "level"
    full_delta = 1.0
    fingerprint = QUALITY_FINGERPRINT

    def change(self, x, delta, rng):
        out = np.empty_like(x)
        for level in np.unique(delta):
            sel = delta == level
            out[sel] = camera.degrade(x[sel], float(min(1.0, abs(level))), rng)
        return out


GENERATORS: dict[str, type[Generator]] = {"pose": PoseGenerator, "quality": QualityGenerator}


def get_generator(name: str) -> Generator:
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}: built-in generators are {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name]()


# ---- `dmfr data synth`: a generative domain from a folder of real images ----------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="real", required=True, metavar="REAL",
                        help="folder of real images, root/identity/image")
    parser.add_argument("--generator", required=True, choices=sorted(GENERATORS))
    parser.add_argument("--delta", required=True, type=float, nargs="+", metavar="DC",
                        help="condition change(s) Δc: yaw degrees (pose) or level 0..1 (quality); "
                             "each real image yields one synthetic image per value")
    parser.add_argument("--out", required=True, metavar="DIR", help="output domain folder (created)")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="fingerprint ε strength (0: none; default 1)")
    parser.add_argument("--identity-loss", type=float, default=0.0,
                        help="blend toward the folder's mean face at full Δc, 0..1 (default 0)")
    parser.add_argument("--image-size", type=int, default=112, help="square output size (default 112)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (quality generator)")
    crop = parser.add_argument_group("preprocessing of the real images first (the data.preprocess fields; "
                                     "give the training run's, so both domains hold the same face box)")
    crop.add_argument("--crop-box", metavar="X,Y,W,H", help="data.preprocess.crop_box, in source pixels")
    crop.add_argument("--crop-center", metavar="W,H", help="data.preprocess.crop_center")
    crop.add_argument("--landmarks", metavar="FILE", help="data.preprocess.landmarks (keys relative to --from)")


def _ints_arg(flag: str, text: str | None, n: int) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise ConfigError(f"{flag}: expected {n} comma-separated integers, got {text!r}")
    return vals


def preprocess_of(args) -> dict | None:
    """The data.preprocess section the synth flags ask for (None: the whole image)."""
    box = _ints_arg("--crop-box", getattr(args, "crop_box", None), 4)
    center = _ints_arg("--crop-center", getattr(args, "crop_center", None), 2)
    landmarks = getattr(args, "landmarks", None)
    given = [name for name, v in (("--crop-box", box), ("--crop-center", center), ("--landmarks", landmarks)) if v]
    if len(given) > 1:
        raise ConfigError(f"give one of --crop-box, --crop-center, --landmarks, not {' and '.join(given)}")
    if not given:
        return None
    return {"crop_box": box or [], "crop_center": center or [], "landmarks": landmarks or ""}


def _check_args(args) -> None:
    if args.strength < 0:
        raise ConfigError(f"--strength: must be ≥ 0, got {args.strength}")
    if not 0 <= args.identity_loss <= 1:
        raise ConfigError(f"--identity-loss: must be in [0, 1], got {args.identity_loss}")
    if args.image_size < 16:
        raise ConfigError(f"--image-size: must be ≥ 16, got {args.image_size}")
    if args.generator == "quality" and any(not 0 <= d <= 1 for d in args.delta):
        raise ConfigError(f"--delta: quality levels must be in [0, 1], got {args.delta}")
    if args.generator == "pose" and any(abs(d) > 90 for d in args.delta):
        raise ConfigError(f"--delta: yaw changes must be within ±90 degrees, got {args.delta}")
    if len(set(args.delta)) != len(args.delta):
        raise ConfigError(f"--delta: values repeat: {args.delta}")
    if os.path.exists(args.out) and os.listdir(args.out):
        raise ConfigError(f"--out: {args.out} exists and is not empty")


def _delta_tag(d: float) -> str:
    return f"{d:+g}".replace(".", "p")


def synthesize_folder(real: str, generator: str, deltas: list[float], out: str, *, strength: float = 1.0,
                      identity_loss: float = 0.0, image_size: int = 112, seed: int = 0,
                      batch: int = 128, preprocess: dict | None = None) -> list[manifest.ManifestEntry]:
    """Write one synthetic PNG per (real image, Δc) under out/identity/ and out/manifest.jsonl.

    `preprocess`: a `data.preprocess` section (crop_center, crop_box or landmarks) applied to each
    real image before the generator, so a domain made from photographs holds the same face box the
    training run crops from the real images (data.preprocess applies to the real domain only)."""
    from dmfr.data.folder import scan_folder
    from dmfr.data.images import load_image, resize_square
    from dmfr.data.preprocess import Preprocessor

    gen = get_generator(generator)
    pre = Preprocessor(preprocess, image_size) if preprocess else None
    pre = pre if pre is not None and pre.active else None
    _, samples, _ = scan_folder(real)
    if not samples:
        raise DataError(f"{real}: no images found in root/identity/image layout")

    def one(rel):
        img = load_image(os.path.join(real, rel))
        if pre is not None:
            img = pre(img, rel, os.path.join(real, rel))
        return resize_square(img, image_size)

    def read(paths):
        return np.stack([one(p) for p in paths])

    paths = [p for p, _ in samples]
    one(paths[0])  # a bad crop or landmarks file fails here, before anything is written
    mean = None
    if identity_loss > 0:  # the folder's mean face, accumulated batch by batch
        total = np.zeros((image_size, image_size, 3), np.float64)
        for s in range(0, len(paths), batch):
            total += read(paths[s:s + batch]).astype(np.float64).sum(0)
        mean = (total / len(paths)).astype(np.float32)
    from dmfr.progress import Progress

    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    entries = []
    progress = Progress(len(paths) * len(deltas), f"data synth {generator}", unit="images")
    for s in range(0, len(paths), batch):
        chunk = paths[s:s + batch]
        images = read(chunk)
        for d in deltas:
            synth = gen.apply(images, np.full(len(chunk), d, np.float32), strength=strength,
                              identity_loss=identity_loss, mean_face=mean, rng=rng)
            for rel, img in zip(chunk, synth):
                identity, name = rel.split("/", 1)
                out_rel = f"{identity}/{os.path.splitext(name)[0]}_{generator}{_delta_tag(d)}.png"
                os.makedirs(os.path.join(out, identity), exist_ok=True)
                Image.fromarray(img).save(os.path.join(out, out_rel))
                entries.append(manifest.ManifestEntry(out_rel, identity, rel, generator, float(d), float(strength)))
            progress.update(len(chunk))
    progress.close()
    manifest.write_manifest(out, entries)
    return entries


def run(args) -> int:
    _check_args(args)
    preprocess = preprocess_of(args)  # flag errors before anything is written
    entries = synthesize_folder(args.real, args.generator, list(args.delta), args.out, strength=args.strength,
                                identity_loss=args.identity_loss, image_size=args.image_size, seed=args.seed,
                                preprocess=preprocess)
    print(f"wrote {len(entries)} {args.generator} images and {os.path.join(args.out, manifest.MANIFEST_NAME)}")
    return 0
