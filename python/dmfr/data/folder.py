"""Image folders `root/identity/image` (torchvision ImageFolder's layout) as a FaceDataset.

Identities are the sub-folders in sorted order (label = position, as ImageFolder assigns);
images are the files with an image extension inside each, sorted by name. Other files are
ignored and listed in `ignored`.
"""
from __future__ import annotations

import os

import numpy as np

from dmfr.data.images import DEFAULT_IMAGE_SIZE, load_image
from dmfr.data.real import RealImageDataset
from dmfr.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".gif", ".bmp", ".webp",
                    ".tif", ".tiff"}


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_folder(root: str) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """(identity names, [(relative path, label)], ignored relative paths)."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: not a folder")
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    samples, ignored = [], []
    for label, name in enumerate(names):
        for entry in sorted(os.scandir(os.path.join(root, name)), key=lambda e: e.name):
            rel = f"{name}/{entry.name}"
            if entry.name.startswith("."):
                continue
            if entry.is_file() and is_image_name(entry.name):
                samples.append((rel, label))
            else:
                ignored.append(rel)
    return names, samples, ignored


class PathDataset(RealImageDataset):
    """Samples that are image files: `paths` absolute or relative to `root`."""

    def __init__(self, root: str, paths: list[str], labels, class_names: list,
                 image_size: int = DEFAULT_IMAGE_SIZE, skip_bad: bool = False):
        super().__init__(np.asarray(labels, dtype=np.int32), class_names, image_size, skip_bad)
        self.root = root
        self.paths = paths

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def key(self, i: int) -> str:
        return self.paths[i]

    def where(self, i: int) -> str:
        return self.path(i)

    def read(self, i: int) -> np.ndarray:
        return load_image(self.path(i))


class FolderDataset(PathDataset):
    def __init__(self, root: str, image_size: int = DEFAULT_IMAGE_SIZE, skip_bad: bool = False,
                 select: dict | None = None):
        root = os.fspath(root)
        names, samples, ignored = scan_folder(root)
        if not samples:
            raise DataError(f"{root}: no images found in root/identity/image layout")
        self.selection = None
        if select is not None:
            from dmfr.data.selection import is_active, select_samples
            if is_active(select):  # data.select: which identities train
                self.selection = select_samples(names, samples, select, root)
                names, samples = self.selection.names, self.selection.samples
        super().__init__(root, [p for p, _ in samples], [lab for _, lab in samples], names,
                         image_size, skip_bad)
        self.ignored = ignored
