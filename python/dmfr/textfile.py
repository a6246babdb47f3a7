"""Reading whitespace-separated text tables (lists, pairs, media files) with errors that name the
file and line."""
from __future__ import annotations

from typing import Iterator

from dmfr.errors import DataError


def split_lines(path: str, what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for every non-blank line of `path`; a file that cannot be read
    is a DataError naming it and `what` it should hold."""
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if parts:
                yield n, parts
