"""Where the evaluated features come from: a features file (any model) or a checkpoint + images.

Features file: `F.npy` (float32, one row per image) with `K.txt` (one image key per line, same
order). From a checkpoint, each image's feature is the embedding of the image plus that of its
horizontal flip (insightface's flip test, `eval_ijbc.py` / `verification.py`), left unnormalised so
that norm weighting stays possible; protocols normalise where their reference does.
"""
from __future__ import annotations

import os

import numpy as np

from dmfr.errors import DataError


class FeatureTable:
    def __init__(self, features: np.ndarray, keys: list[str], source: str):
        self.features = features
        self.keys = keys
        self.source = source
        self.index = {}
        for i, key in enumerate(keys):
            if key in self.index:
                raise DataError(f"{source}: key {key!r} on line {i + 1} repeats line {self.index[key] + 1}")
            self.index[key] = i

    def rows(self, keys, where: str, places=None) -> np.ndarray:
        """Row of every key; a missing key is reported with the file and place (default: the
        line, key i on line i + 1) that asked for it."""
        out = np.empty(len(keys), dtype=np.int64)
        for i, key in enumerate(keys):
            row = self.index.get(key)
            if row is None:
                place = places[i] if places is not None else f"line {i + 1}"
                raise DataError(f"{where}, {place}: image {key!r} has no feature in {self.source}")
            out[i] = row
        return out


def read_keys(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read keys: {exc}") from None
    keys = []
    for n, line in enumerate(lines, 1):
        key = line.strip()
        if not key:
            if n == len(lines):
                continue
            raise DataError(f"{path}, line {n}: empty key")
        keys.append(key)
    return keys


def load_feature_file(features_path: str, keys_path: str) -> FeatureTable:
    try:
        feats = np.load(features_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{features_path}: cannot load features (.npy expected): {exc}") from None
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise DataError(f"{features_path}: features must be a 2-D array [images, dims], got {feats.shape}")
    if not np.issubdtype(feats.dtype, np.floating):
        raise DataError(f"{features_path}: features must be floating point, got {feats.dtype}")
    keys = read_keys(keys_path)
    if len(keys) != feats.shape[0]:
        raise DataError(f"{keys_path} has {len(keys)} keys but {features_path} has {feats.shape[0]} rows")
    return FeatureTable(np.asarray(feats, dtype=np.float32), keys, features_path)


def image_paths(images_dir: str, keys: list[str]) -> list[str]:
    """`images_dir/key` for every key; a missing image is a DataError naming it."""
    paths = []
    for key in keys:
        path = os.path.join(images_dir, key)
        if not os.path.isfile(path):
            raise DataError(f"{images_dir}: image {key!r} not found")
        paths.append(path)
    return paths


def embed_image_files(checkpoint: str, images_dir: str, keys: list[str], device: str = "cpu",
                      batch_size: int = 64, landmarks: str | None = None) -> FeatureTable:
    """Embed `images_dir/key` for every key with the engine's Embedder (image + flip, summed)."""
    from dmfr.embed import Embedder  # the engine's module; imported only when a checkpoint is used

    paths = image_paths(images_dir, keys)
    embedder = Embedder.from_checkpoint(checkpoint, device, landmarks)  # with its training preprocessing
    feats = embedder.embed_paths(paths, flip=True, batch_size=batch_size, keys=keys)  # image + flip, summed
    return FeatureTable(np.asarray(feats, dtype=np.float32), list(keys), checkpoint)


def embed_uint8_images(checkpoint: str, images: np.ndarray, device: str = "cpu",
                       batch_size: int = 64) -> np.ndarray:
    """Embed decoded RGB uint8 images (a .bin pack) in batches: image + flip, summed."""
    from dmfr.embed import Embedder

    from dmfr.progress import Progress

    embedder = Embedder.from_checkpoint(checkpoint, device)
    out = []
    with Progress(len(images), "embedding", unit="images") as progress:
        for i in range(0, len(images), batch_size):
            out.append(embedder.embed_images(images[i:i + batch_size], flip=True))
            progress.update(len(out[-1]))
    return np.concatenate(out).astype(np.float32, copy=False)
