"""The LFW layout (`Name/Name_0001.jpg`) and its verification protocol file `pairs.txt`.

pairs.txt (LFW View 2): a first line `folds pairs` (e.g. `10 300`), then for each fold `pairs`
same-person lines `name i j` followed by `pairs` different-person lines `name1 i name2 j`
(tab- or space-separated). View 1's pairsDevTrain/Test.txt has a single count on its first line
(one fold). Image keys are relative paths `Name/Name_%04d.jpg` under the images root.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from dmfr.errors import DataError


def lfw_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


@dataclass
class LfwPairs:
    folds: int
    pairs_per_fold: int  # same-person pairs per fold (as many different-person ones follow)
    pairs: list[tuple[str, str, bool]]

    def fold_of(self, i: int) -> int:
        return i // (2 * self.pairs_per_fold)


def _number(text: str, path: str, lineno: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: expected an image number, got {text!r}") from None
    if value < 1:
        raise DataError(f"{path}:{lineno}: image numbers start at 1, got {value}")
    return value


def read_pairs_file(path: str) -> LfwPairs:
    path = os.fspath(path)
    try:
        lines = open(path, "r", encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read pairs file: {exc}") from None
    if not lines:
        raise DataError(f"{path}:1: empty pairs file")
    head = lines[0].split()
    try:
        counts = [int(v) for v in head]
    except ValueError:
        counts = []
    if len(counts) == 2:
        folds, per_fold = counts
    elif len(counts) == 1:
        folds, per_fold = 1, counts[0]
    else:
        raise DataError(f"{path}:1: expected 'folds pairs' (e.g. '10 300'), got {lines[0]!r}")
    if folds < 1 or per_fold < 1:
        raise DataError(f"{path}:1: folds and pairs must be positive, got {lines[0]!r}")
    body = [(n, line) for n, line in enumerate(lines[1:], 2) if line.strip()]
    expected = folds * 2 * per_fold
    if len(body) != expected:
        raise DataError(f"{path}: header says {folds} folds x {per_fold} same + {per_fold} "
                        f"different pairs = {expected} lines, found {len(body)}")
    pairs = []
    for k, (lineno, line) in enumerate(body):
        fields = line.split()
        same = (k % (2 * per_fold)) < per_fold
        if same:
            if len(fields) != 3:
                raise DataError(f"{path}:{lineno}: a same-person line is 'name i j', got {line!r}")
            name, i, j = fields
            a, b = _number(i, path, lineno), _number(j, path, lineno)
            pairs.append((lfw_key(name, a), lfw_key(name, b), True))
        else:
            if len(fields) != 4:
                raise DataError(f"{path}:{lineno}: a different-person line is 'name1 i name2 j', "
                                f"got {line!r}")
            n1, i, n2, j = fields
            a, b = _number(i, path, lineno), _number(j, path, lineno)
            pairs.append((lfw_key(n1, a), lfw_key(n2, b), False))
    return LfwPairs(folds, per_fold, pairs)


def read_pairs(path: str) -> list[tuple[str, str, bool]]:
    """[(key1, key2, issame)] with keys `Name/Name_0001.jpg`, in file order (fold by fold)."""
    return read_pairs_file(path).pairs


def find_lfw(root: str) -> tuple[str, str] | None:
    """(images root, pairs.txt) for an LFW folder: `root/pairs.txt` with images in `root/images`,
    `root/lfw` or `root` itself; None when `root` is not in this layout."""
    pairs = os.path.join(root, "pairs.txt")
    if not os.path.isfile(pairs):
        return None
    for sub in ("images", "lfw", "lfw-deepfunneled", ""):
        images = os.path.join(root, sub) if sub else root
        if os.path.isdir(images) and any(
                os.path.isdir(os.path.join(images, d)) for d in os.listdir(images)):
            return images, pairs
    return None


def missing_images(images_root: str, pairs: list[tuple[str, str, bool]]) -> list[str]:
    keys = sorted({k for a, b, _ in pairs for k in (a, b)})
    return [k for k in keys if not os.path.isfile(os.path.join(images_root, k))]
