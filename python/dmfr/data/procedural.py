"""The built-in procedural benchmark: the main job's default data (docs/domains.md, issue 4).

Training set: a long-tailed, frontal-biased, high-quality real domain (id 0) rendered from latent
identity codes (dmfr.data.render), plus one generative domain per name in
`data.procedural.generators` (ids 1..N), made from the real images by the built-in generators
(dmfr.data.synth) with their fingerprint ε at `data.procedural.fingerprint_strength`.
Test sets: identities disjoint from training (their codes come from a separate random stream,
labels 0..T-1 of their own), three protocols, all real renderings without ε.

Everything is deterministic by `data.procedural.seed`. Built images are cached in memory (uint8)
per process, so a rank that builds twice pays once.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dmfr.data import camera, render
from dmfr.data.base import DomainInfo
from dmfr.data.synth import get_generator
from dmfr.errors import ConfigError

PROTOCOLS = ("general", "cross_pose", "cross_quality")

# Defaults as in ts/config/schema.ts (data.procedural); identity_loss, test_identities and
# min_far are benchmark knobs read when present.
_DEFAULTS = {
    "seed": 0,
    "identities": 64,
    "images_per_identity": 8,
    "generators": ["pose", "quality"],
    "fingerprint_strength": 1.0,
    "identity_loss": 0.5,  # the prototype's "50% toward the mean face" (issue 4, calibration)
    "test_identities": 0,  # 0: as few as the FAR floor needs, at least 100
    "min_far": 1e-4,  # test sets hold ≥ 10 / min_far impostor pairs
}
ZERO_DELTA_FRACTION = 0.25  # share of generative samples with Δc = 0 (the filter method's pairs)

_cache: dict[str, object] = {}


def benchmark_settings(config: dict) -> dict:
    """data.procedural with defaults filled, plus data.image_size; ConfigError on bad values."""
    data = config.get("data", {}) or {}
    proc = {**_DEFAULTS, **(data.get("procedural") or {})}
    proc["image_size"] = int(data.get("image_size", 112))
    for key in ("identities", "images_per_identity", "image_size"):
        if int(proc[key]) < 1:
            raise ConfigError(f"data.procedural.{key}: must be ≥ 1, got {proc[key]!r}")
    if proc["image_size"] < 16:
        raise ConfigError(f"data.image_size: the procedural benchmark needs ≥ 16 px, got {proc['image_size']}")
    if not 0 <= float(proc["identity_loss"]) <= 1:
        raise ConfigError(f"data.procedural.identity_loss: must be in [0, 1], got {proc['identity_loss']!r}")
    if float(proc["fingerprint_strength"]) < 0:
        raise ConfigError(f"data.procedural.fingerprint_strength: must be ≥ 0, got {proc['fingerprint_strength']!r}")
    if not isinstance(proc["generators"], list) or not all(isinstance(g, str) for g in proc["generators"]):
        raise ConfigError(f"data.procedural.generators: expected a list of names, got {proc['generators']!r}")
    for name in proc["generators"]:
        try:
            get_generator(name)
        except ConfigError as exc:
            raise ConfigError(f"data.procedural.generators: {exc}") from None
    if len(set(proc["generators"])) != len(proc["generators"]):
        raise ConfigError(f"data.procedural.generators: names repeat: {proc['generators']}")
    return proc


def _normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] → float32 [B, 3, H, W], arcface_torch's (x / 255 − 0.5) / 0.5."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0).contiguous()


@dataclass
class ProceduralDataset:
    """The procedural training set (implements dmfr.data.base.FaceDataset)."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int32 [N]
    domains: np.ndarray  # int16 [N]
    pair: np.ndarray  # int32 [N]: Δc = 0 generative sample → its source real sample, else −1
    source: np.ndarray  # int32 [N]: a generative sample's source real sample, −1 for real ones
    delta: np.ndarray  # float32 [N]: Δc (degrees for pose, level for quality), NaN for real
    yaw: np.ndarray  # float32 [N]: nominal yaw in degrees (a pose sample's: its source's + Δc)
    quality: np.ndarray  # float32 [N]: nominal quality level (a quality sample's: its source's + Δc, ≤ 1)
    domain_info: list[DomainInfo]
    num_classes: int
    codes: np.ndarray = field(repr=False, default=None)  # float32 [num_classes, CODE_DIM]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return _normalise(self.images[np.asarray(indices, dtype=np.int64)])


@dataclass
class TestSet:
    """One evaluation protocol: real renderings of identities disjoint from training, without ε.

    `pairs` [P, 2] (int32 indices into images) with `issame` [P] (bool) is every gallery × probe
    combination; `gallery` and `probe` are the template lists (image indices) for 1:N use.
    """

    protocol: str
    images: np.ndarray  # uint8 [M, H, W, 3]
    keys: list[str]
    labels: np.ndarray  # int32 [M], test identities 0..T-1 (not training labels)
    yaw: np.ndarray  # float32 [M], degrees
    quality: np.ndarray  # float32 [M], degradation level 0..1
    gallery: np.ndarray  # int32 image indices
    probe: np.ndarray  # int32 image indices
    pairs: np.ndarray  # int32 [P, 2]
    issame: np.ndarray  # bool [P]
    codes: np.ndarray = field(repr=False, default=None)  # float32 [T, CODE_DIM]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return _normalise(self.images[np.asarray(indices, dtype=np.int64)])

    @property
    def min_far(self) -> float:
        """The lowest FAR this set supports with ≥ 10 impostor pairs per false accept."""
        return 10.0 / max(1, int((~self.issame).sum()))


def _long_tail_counts(rng: np.random.Generator, n_ids: int, mean: int) -> np.ndarray:
    """Images per identity: a Zipf-like tail (rank^-0.8), mean ≈ `mean`, at least 2 each."""
    w = (np.arange(1, n_ids + 1) ** -0.8)
    w = w / w.mean() * mean
    counts = np.maximum(2, np.round(w)).astype(np.int64)
    return rng.permutation(counts)


def _render_real(codes, yaw, quality, rng, size) -> np.ndarray:
    """Render and degrade real images; quality levels are applied in groups of equal level."""
    nuis = render.sample_nuisance(rng, len(yaw), yaw)
    images = render.render(codes, nuis, size)
    q = np.round(quality, 2)
    for level in np.unique(q[q > 0]):
        sel = np.flatnonzero(q == level)
        images[sel] = np.clip(camera.degrade(images[sel].astype(np.float32), float(level), rng) + 0.5, 0, 255).astype(np.uint8)
    return images


def _generative_deltas(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """Δc per source image: a quarter exactly 0, the rest across the generator's range."""
    zero = rng.random(n) < ZERO_DELTA_FRACTION
    if name == "pose":  # toward the large yaws the real domain lacks
        d = rng.choice([-1.0, 1.0], n) * rng.uniform(25, 55, n)
    else:  # quality levels
        d = rng.choice([0.25, 0.5, 0.75, 1.0], n)
    return np.where(zero, 0.0, d).astype(np.float32)


def build_train_set(config: dict) -> ProceduralDataset:
    """The procedural training set for a run config (data.procedural, data.image_size)."""
    s = benchmark_settings(config)
    key = json.dumps({k: s[k] for k in ("seed", "identities", "images_per_identity", "generators",
                                        "fingerprint_strength", "identity_loss", "image_size")}, sort_keys=True)
    cached = _cache.get("train:" + key)
    if cached is not None:
        return cached
    seed, size = int(s["seed"]), s["image_size"]
    codes = render.sample_codes(np.random.default_rng([seed, 1]), s["identities"])
    rng = np.random.default_rng([seed, 3])
    counts = _long_tail_counts(rng, s["identities"], s["images_per_identity"])
    labels = np.repeat(np.arange(s["identities"]), counts).astype(np.int32)
    n = len(labels)
    # Frontal-biased yaw (most near 0, a few up to ±30°) and mostly high quality.
    yaw = np.where(rng.random(n) < 0.85, np.clip(rng.normal(0, 6, n), -15, 15), rng.uniform(-30, 30, n))
    quality = np.where(rng.random(n) < 0.85, 0.0, rng.uniform(0.1, 0.35, n))
    real = _render_real(codes[labels], yaw.astype(np.float32), quality, rng, size)
    mean_face = real.astype(np.float32).mean(0)

    # Per-domain parts, concatenated at the end: the real domain first.
    images, lab, dom = [real], [labels], [np.zeros(n, np.int16)]
    pair, src, delta = [np.full(n, -1, np.int32)], [np.full(n, -1, np.int32)], [np.full(n, np.nan, np.float32)]
    yaws, qualities = [yaw], [quality]
    infos = [DomainInfo(0, "real", "real")]
    for k, name in enumerate(s["generators"], start=1):
        gen = get_generator(name)
        grng = np.random.default_rng([seed, 10 + k])
        d = _generative_deltas(grng, name, n)
        images.append(gen.apply(real, d, strength=float(s["fingerprint_strength"]),
                                identity_loss=float(s["identity_loss"]), mean_face=mean_face, rng=grng))
        lab.append(labels)
        dom.append(np.full(n, k, np.int16))
        idx = np.arange(n, dtype=np.int32)
        pair.append(np.where(d == 0, idx, -1).astype(np.int32))
        src.append(idx)
        delta.append(d)
        yaws.append(yaw + d if name == "pose" else yaw)
        qualities.append(np.minimum(1.0, quality + d) if name == "quality" else quality)
        infos.append(DomainInfo(k, name, "generative", name))
    ds = ProceduralDataset(
        images=np.concatenate(images), labels=np.concatenate(lab), domains=np.concatenate(dom),
        pair=np.concatenate(pair), source=np.concatenate(src), delta=np.concatenate(delta),
        yaw=np.concatenate(yaws).astype(np.float32), quality=np.concatenate(qualities).astype(np.float32),
        domain_info=infos, num_classes=int(s["identities"]), codes=codes,
    )
    _cache["train:" + key] = ds
    return ds


def _test_identities(s: dict) -> int:
    """Enough identities that gallery (1 each) × probe (2 each) holds ≥ 10 / min_far impostors."""
    need = 10.0 / float(s["min_far"])
    t = max(100, math.ceil((1 + math.sqrt(1 + 2 * need)) / 2))  # t · 2(t − 1) ≥ need
    return int(s["test_identities"]) or t


TEST_SET_VERSION = 1  # bump when the test renderings change: on-disk caches keyed by it go stale


def build_test_set(config: dict, protocol: str, cache_dir: str | os.PathLike | None = None) -> TestSet:
    """One protocol's test set: `general` (frontal ↔ frontal), `cross_pose` (gallery frontal,
    probe |yaw| 45–65°), `cross_quality` (gallery sharp, probe degraded at level 0.6–1).

    `cache_dir`: also keep it on disk there (`procedural-test-<key hash>.npz`), so the processes
    of a study, which evaluate every cell on the same sets, render each set once: at FAR 1e-5
    (708 identities, 2,124 images) rendering takes ~7 s a protocol, as long as embedding it."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown test protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    s = benchmark_settings(config)
    t = _test_identities(s)
    key = json.dumps({"seed": s["seed"], "size": s["image_size"], "t": t, "p": protocol, "v": TEST_SET_VERSION})
    cached = _cache.get("test:" + key)
    if cached is not None:
        return cached
    path = Path(cache_dir) / f"procedural-test-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz" if cache_dir else None
    if path is not None and path.exists():
        ts = _load_test_set(path, protocol)
        _cache["test:" + key] = ts
        return ts
    ts = _render_test_set(s, t, protocol)
    _cache["test:" + key] = ts
    if path is not None:
        from dmfr.checkpoint import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f: getattr(ts, f) for f in _TEST_ARRAYS}
        atomic_write(path, lambda fh: np.savez(fh, keys=np.array(ts.keys), **arrays))
    return ts


_TEST_ARRAYS = ("images", "labels", "yaw", "quality", "gallery", "probe", "pairs", "issame", "codes")


def _load_test_set(path: Path, protocol: str) -> TestSet:
    with np.load(path, allow_pickle=False) as z:
        return TestSet(protocol=protocol, keys=[str(k) for k in z["keys"]], **{f: z[f] for f in _TEST_ARRAYS})


def _render_test_set(s: dict, t: int, protocol: str) -> TestSet:
    seed, size = int(s["seed"]), s["image_size"]
    codes = render.sample_codes(np.random.default_rng([seed, 2]), t)  # disjoint stream from training
    rng = np.random.default_rng([seed, 20 + PROTOCOLS.index(protocol)])
    per = 3  # one gallery image and two probes per identity
    labels = np.repeat(np.arange(t), per).astype(np.int32)
    role = np.tile(np.arange(per), t)  # 0: gallery, 1..: probe
    is_probe = role > 0
    m = len(labels)
    yaw = np.clip(rng.normal(0, 4, m), -10, 10)
    quality = np.zeros(m)
    if protocol == "cross_pose":
        yaw = np.where(is_probe, rng.choice([-1.0, 1.0], m) * rng.uniform(45, 65, m), yaw)
    elif protocol == "cross_quality":
        quality = np.where(is_probe, rng.uniform(0.6, 1.0, m), 0.0)
    images = _render_real(codes[labels], yaw.astype(np.float32), quality, rng, size)
    gallery = np.flatnonzero(~is_probe).astype(np.int32)
    probe = np.flatnonzero(is_probe).astype(np.int32)
    gi, pj = np.meshgrid(gallery, probe, indexing="ij")
    pairs = np.stack([gi.ravel(), pj.ravel()], 1).astype(np.int32)
    ts = TestSet(
        protocol=protocol, images=images,
        keys=[f"{protocol}/id{lab:05d}/{r}" for lab, r in zip(labels, role)],
        labels=labels, yaw=yaw.astype(np.float32), quality=quality.astype(np.float32),
        gallery=gallery, probe=probe, pairs=pairs, issame=labels[pairs[:, 0]] == labels[pairs[:, 1]],
        codes=codes,
    )
    return ts


def write_test_set(ts: TestSet, out_dir: str) -> dict[str, str]:
    """Export a test set in the files `dmfr eval templates` reads (docs/evaluation.md):

    - images/<key>.png, one image per key (keys are `protocol/idNNNNN/role`);
    - media.txt: `image template media` lines, each image its own template and media (the
      template id is the image's index);
    - pairs.txt: `template1 template2 label` for every gallery × probe pair (gallery first);
    - attributes.csv: `image,yaw,quality,degradation` with quality = 1 − degradation level, so
      higher is better as dmfr.eval.attributes expects. The protocol's gallery/probe split is
      already in pairs.txt; no attribute rule is needed to score it.
    Returns the paths written, by name.
    """
    import os

    from PIL import Image

    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    names = [f"{k}.png" for k in ts.keys]
    for name, img in zip(names, ts.images):
        path = os.path.join(out_dir, "images", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(img).save(path)
    paths = {k: os.path.join(out_dir, f) for k, f in
             (("media", "media.txt"), ("pairs", "pairs.txt"), ("attributes", "attributes.csv"))}
    paths["images"] = os.path.join(out_dir, "images")
    with open(paths["media"], "w") as f:
        f.writelines(f"{name} {i} {i}\n" for i, name in enumerate(names))
    np.savetxt(paths["pairs"], np.c_[ts.pairs, ts.issame.astype(np.int32)], fmt="%d")
    with open(paths["attributes"], "w") as f:
        f.write("image,yaw,quality,degradation\n")
        f.writelines(f"{name},{y:.2f},{1 - q:.3f},{q:.3f}\n" for name, y, q in zip(names, ts.yaw, ts.quality))
    return paths
