"""Real dataset + generative domains (data.generative) as one FaceDataset.

Each `data.generative` entry `{name, path}` is a folder of synthetic images with its
manifest.jsonl (dmfr.data.manifest, docs/domains.md). Domain ids follow the entries' order
(1..N; 0 is the real domain). A manifest's `identity` is resolved against the real dataset's
`class_names` (or is an integer label); its `source` against the real dataset's sample `paths`
(or is an integer index). The source's identity must be the entry's identity. Samples with
Δc = 0 point at their source through `pair` (the filter method's (real, synthetic) pairs).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dmfr.data.base import DomainInfo, FaceDataset
from dmfr.data.manifest import ManifestEntry, _records, manifest_path, read_manifest
from dmfr.errors import ConfigError, DataError


def _load_image(path: str) -> np.ndarray:
    from dmfr.data.images import load_image  # H3's decoder (Pillow, RGB uint8, named errors)

    return load_image(path)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from dmfr.data.images import resize_square

    return resize_square(img, size)


class _Resolver:
    """Maps manifest identities and sources onto the real dataset's labels and indices."""

    def __init__(self, real: FaceDataset):
        self.real = real
        names = getattr(real, "class_names", None)
        self.by_name = {str(n): i for i, n in enumerate(names)} if names is not None else None
        paths = getattr(real, "paths", None)
        self.by_path = {os.path.normpath(p): i for i, p in enumerate(paths)} if paths is not None else None

    def label(self, identity: str | int, where: str) -> int:
        if isinstance(identity, int):
            lab = identity
        elif self.by_name is not None and identity in self.by_name:
            return self.by_name[identity]
        elif identity.isdigit():
            lab = int(identity)
        else:
            raise DataError(f"{where}: identity {identity!r} is not an identity of the real dataset")
        if not 0 <= lab < self.real.num_classes:
            raise DataError(f"{where}: identity label {lab} out of range [0, {self.real.num_classes})")
        return lab

    def source(self, source: str | int, where: str) -> int:
        if isinstance(source, int):
            idx = source
        elif self.by_path is not None and os.path.normpath(source) in self.by_path:
            return self.by_path[os.path.normpath(source)]
        elif source.isdigit():
            idx = int(source)
        else:
            raise DataError(f"{where}: source {source!r} is not a sample of the real dataset")
        if not 0 <= idx < len(self.real):
            raise DataError(f"{where}: source index {idx} out of range [0, {len(self.real)})")
        return idx


class GenerativeDataset:
    """The base dataset's samples first (its real domain 0 and any generative domains it has),
    then each attached generative domain's, with the next domain ids."""

    def __init__(self, real: FaceDataset, domains: list[tuple[str, str, list[ManifestEntry]]], image_size: int):
        self.real = real
        self.num_real = len(real)
        self.num_classes = real.num_classes
        self.image_size = image_size
        # A base with generative domains of its own (the procedural benchmark) keeps them; the
        # attached domains take the next ids.
        base_source = getattr(real, "source", None)
        base_delta = getattr(real, "delta", None)
        labels, doms, pair, source, delta, files = [np.asarray(real.labels, np.int32)], \
            [np.asarray(real.domains, np.int16)], [np.asarray(real.pair, np.int32)], \
            [np.asarray(base_source, np.int32) if base_source is not None else np.full(self.num_real, -1, np.int32)], \
            [np.asarray(base_delta, np.float32) if base_delta is not None else np.full(self.num_real, np.nan, np.float32)], []
        self.domain_info = list(real.domain_info)
        first_id = len(self.domain_info)
        resolver = _Resolver(real)
        taken = {d.name for d in self.domain_info}
        for k, (name, folder, entries) in enumerate(domains, start=first_id):
            if name in taken:
                raise ConfigError(f"data.generative[{k - first_id}].name: domain name {name!r} is already used")
            taken.add(name)
            file = manifest_path(folder)
            lines = [n for n, _ in _records(file)]
            lab = np.empty(len(entries), np.int32)
            src = np.empty(len(entries), np.int32)
            for i, (e, line_no) in enumerate(zip(entries, lines)):
                where = f"{file}:{line_no}"
                lab[i] = resolver.label(e.identity, where)
                src[i] = resolver.source(e.source, where)
                if int(real.domains[src[i]]) != 0:
                    raise DataError(f"{where}: source {e.source!r} is a generative sample, not a real one")
                if int(real.labels[src[i]]) != lab[i]:
                    raise DataError(f"{where}: identity {e.identity!r} differs from its source's identity "
                                    f"(label {int(real.labels[src[i]])})")
                files.append(os.path.join(os.path.dirname(os.path.abspath(file)), e.path))
            d = np.array([e.delta for e in entries], np.float32)
            gens = sorted({e.generator for e in entries})
            labels.append(lab)
            doms.append(np.full(len(entries), k, np.int16))
            pair.append(np.where(d == 0, src, -1).astype(np.int32))
            source.append(src)
            delta.append(d)
            self.domain_info.append(DomainInfo(k, name, "generative", "+".join(gens)))
        self.labels = np.concatenate(labels)
        self.domains = np.concatenate(doms)
        self.pair = np.concatenate(pair)
        self.source = np.concatenate(source)  # int32 [N]: a generative sample's source, −1 for real
        self.delta = np.concatenate(delta)  # float32 [N]: Δc, NaN for real samples
        self.files = files  # absolute image paths of the generative samples, in order

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """Base samples through the base dataset, attached generative ones decoded from their files."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range [0, {len(self)})")
        out = torch.empty((len(idx), 3, self.image_size, self.image_size), dtype=torch.float32)
        is_real = idx < self.num_real
        if is_real.any():
            out[torch.from_numpy(np.flatnonzero(is_real))] = self.real.load(idx[is_real])
        gen = np.flatnonzero(~is_real)
        if len(gen):
            batch = np.stack([_resize(_load_image(self.files[i - self.num_real]), self.image_size) for i in idx[gen]])
            t = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # arcface_torch
            out[torch.from_numpy(gen)] = t
        return out


def _image_size(real: FaceDataset) -> int:
    size = getattr(real, "image_size", None)
    if size is None:
        size = int(real.load(np.array([0])).shape[-1]) if len(real) else 112
    return int(size)


def attach_generative(real_dataset: FaceDataset, entries: list[dict]) -> GenerativeDataset:
    """Combine a real dataset with the generative domains named by `data.generative`."""
    domains = []
    names = set()
    for i, spec in enumerate(entries):
        where = f"data.generative[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("path"), str):
            raise ConfigError(f"{where}: expected {{name, path}} strings, got {spec!r}")
        if spec["name"] in names:
            raise ConfigError(f"{where}.name: domain name {spec['name']!r} is already used")
        names.add(spec["name"])
        domains.append((spec["name"], spec["path"], read_manifest(spec["path"])))
    return GenerativeDataset(real_dataset, domains, _image_size(real_dataset))
