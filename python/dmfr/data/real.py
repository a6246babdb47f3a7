"""Shared base of the real-image sources (.rec, folders, list files).

Each holds one real domain (DomainInfo id 0) and reads samples one by one. With `skip_bad`, a
sample that cannot be read is replaced by the next readable image of the same identity — the
controller has already planned the batch by label (docs/protocol.md `plan`), so the batch keeps
its size and labels — and counted once in `skipped`. Without it, the first bad sample stops the
run with a DataError naming the file and offset or path.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dmfr.data.base import DomainInfo
from dmfr.data.images import DEFAULT_IMAGE_SIZE, to_tensor_batch
from dmfr.errors import DataError

if TYPE_CHECKING:
    import torch

REAL_DOMAIN = DomainInfo(id=0, name="real", kind="real")


def contiguous_labels(raw: Sequence, where: str) -> tuple[np.ndarray, list]:
    """Map arbitrary identity labels to 0..K-1 in sorted order; returns (labels, class values).

    Labels already 0..K-1 map to themselves, so a pack written by insightface keeps its ids.
    """
    values = sorted(set(raw))
    index = {v: i for i, v in enumerate(values)}
    labels = np.fromiter((index[v] for v in raw), dtype=np.int32, count=len(raw))
    if len(values) > np.iinfo(np.int32).max:
        raise DataError(f"{where}: too many identities ({len(values)})")
    return labels, values


class RealImageDataset:
    """FaceDataset for one real domain; subclasses implement `read(i) -> RGB uint8 HWC`."""

    def __init__(self, labels: np.ndarray, class_names: list, image_size: int = DEFAULT_IMAGE_SIZE,
                 skip_bad: bool = False):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        n = len(self.labels)
        self.domains = np.zeros(n, dtype=np.int16)
        self.pair = np.full(n, -1, dtype=np.int32)
        self.domain_info = [REAL_DOMAIN]
        self.image_size = int(image_size)
        self.skip_bad = bool(skip_bad)
        self.skipped = 0
        self.bad: set[int] = set()
        self._members: dict[int, np.ndarray] | None = None
        self.preprocess = None  # dmfr.data.preprocess.Preprocessor (data.preprocess), set by the registry

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def key(self, i: int) -> str | None:
        """Sample i's path relative to the dataset root (finds its landmarks); None without paths."""
        return None

    def where(self, i: int) -> str:
        return f"sample {i}"

    def read_prepared(self, i: int) -> np.ndarray:
        img = self.read(i)
        return img if self.preprocess is None else self.preprocess(img, self.key(i), self.where(i))

    def load_uint8(self, indices) -> list[np.ndarray]:
        out = []
        for i in np.asarray(indices, dtype=np.int64).reshape(-1):
            if i < 0 or i >= len(self):
                raise IndexError(f"sample index {int(i)} out of range [0, {len(self)})")
            out.append(self._read_or_substitute(int(i)))
        return out

    def load(self, indices) -> "torch.Tensor":
        """float32 [B, 3, S, S], (x / 255 - 0.5) / 0.5, RGB (arcface_torch)."""
        return to_tensor_batch(self.load_uint8(indices), self.image_size)

    def _read_or_substitute(self, i: int) -> np.ndarray:
        if i not in self.bad:
            try:
                return self.read_prepared(i)
            except DataError as exc:
                if not self.skip_bad:
                    raise
                self._mark_bad(i, exc)
        for j in self._same_identity_after(i):
            if j in self.bad:
                continue
            try:
                return self.read_prepared(j)
            except DataError as exc:
                self._mark_bad(j, exc)
        raise DataError(f"identity {self.class_names[self.labels[i]]!r}: no readable image left "
                        f"({len(self._members_of(i))} images, all bad)")

    def _mark_bad(self, i: int, exc: DataError) -> None:
        self.bad.add(i)
        self.skipped += 1
        print(f"dmfr: warning: skipping bad sample {i}: {exc}", file=sys.stderr)

    def _members_of(self, i: int) -> np.ndarray:
        if self._members is None:
            order = np.argsort(self.labels, kind="stable")
            bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
            self._members = {c: order[bounds[c]:bounds[c + 1]] for c in range(self.num_classes)}
        return self._members[int(self.labels[i])]

    def _same_identity_after(self, i: int):
        members = self._members_of(i)
        start = int(np.searchsorted(members, i))  # members are in index order (stable sort)
        for k in range(1, len(members) + 1):
            yield int(members[(start + k) % len(members)])
