"""The LFW layout (`Name/Name_0001.jpg`) and its verification protocol file `pairs.txt`.

pairs.txt (LFW View 2): a first line `folds pairs` (e.g. `10 300`), then for each fold `pairs`
same-person lines `name i j` followed by `pairs` different-person lines `name1 i name2 j`
(tab- or space-separated). View 1's pairsDevTrain/Test.txt has a single count on its first line
(one fold). Image keys are relative paths `Name/Name_%04d.jpg` under the images root.

dmfr extension, for folders whose files are not named `Name_%04d.jpg` (ORL's `s1/1.pgm`): an
image field that ends in an image extension is the file name inside the identity's folder
(`s1 1.pgm 7.pgm`); `dmfr data pairs` writes numbers wherever the LFW naming holds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from dmfr.errors import DataError


def lfw_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


@dataclass
class LfwPairs:
    folds: int
    pairs_per_fold: int  # same-person pairs per fold (as many different-person ones follow)
    pairs: list[tuple[str, str, bool]]
    lines: list[int] = field(default_factory=list)  # the line number of each pair

    def fold_of(self, i: int) -> int:
        return i // (2 * self.pairs_per_fold)


def _image_key(name: str, text: str, path: str, lineno: int) -> str:
    """`Name/Name_%04d.jpg` for a number; `Name/FILE` for a field with an image extension."""
    from dmfr.data.folder import is_image_name

    if is_image_name(text) and "/" not in text and text not in (".", ".."):
        return f"{name}/{text}"
    return lfw_key(name, _number(text, path, lineno))


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
            pairs.append((_image_key(name, i, path, lineno), _image_key(name, j, path, lineno), True))
        else:
            if len(fields) != 4:
                raise DataError(f"{path}:{lineno}: a different-person line is 'name1 i name2 j', "
                                f"got {line!r}")
            n1, i, n2, j = fields
            pairs.append((_image_key(n1, i, path, lineno), _image_key(n2, j, path, lineno), False))
    return LfwPairs(folds, per_fold, pairs, [lineno for lineno, _ in body])


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
