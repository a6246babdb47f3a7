"""List files: one `path label` per line, paths relative to the list file's folder.

The label is the last whitespace-separated field, so paths may contain spaces; blank lines and
lines starting with `#` are skipped. Labels are non-negative integers used as class indices
(num_classes = largest + 1), like the labels of a `.rec`.
"""
from __future__ import annotations

import os

from dmfr.data.folder import PathDataset
from dmfr.data.images import DEFAULT_IMAGE_SIZE
from dmfr.errors import DataError


def read_list(path: str) -> list[tuple[str, int]]:
    """[(relative path, label)] in file order; a malformed line is an error naming it."""
    path = os.fspath(path)
    try:
        text = open(path, "r", encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file: {exc}") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip().rsplit(None, 1)
        if len(fields) != 2:
            raise DataError(f"{path}:{lineno}: expected 'path label', got {line!r}")
        rel, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise DataError(f"{path}:{lineno}: label {label_text!r} is not an integer") from None
        if label < 0:
            raise DataError(f"{path}:{lineno}: label {label} is negative")
        out.append((rel.strip(), label))
    return out


class ListDataset(PathDataset):
    def __init__(self, path: str, image_size: int = DEFAULT_IMAGE_SIZE, skip_bad: bool = False,
                 select: dict | None = None):
        path = os.fspath(path)
        entries = read_list(path)
        if not entries:
            raise DataError(f"{path}: the list has no entries")
        root = os.path.dirname(os.path.abspath(path))
        names = list(range(max(lab for _, lab in entries) + 1))
        self.selection = None
        if select is not None:
            from dmfr.data.selection import is_active, select_samples
            if is_active(select):  # data.select: identities are the labels, named by their numbers
                self.selection = select_samples(names, entries, select, path)
                names, entries = self.selection.names, self.selection.samples
        super().__init__(root, [p for p, _ in entries], [lab for _, lab in entries],
                         names, image_size, skip_bad)
        self.list_path = path
