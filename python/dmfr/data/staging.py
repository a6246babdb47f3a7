"""Output folders that appear whole or not at all: `dmfr data align|select|templates|cross-quality`
build their folder in a temporary sibling and rename it into place in one step, so an error or a
kill half-way leaves no half-written output (issue #11, "Bad input": nothing is half-written)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def staged_folder(out: str) -> Iterator[str]:
    """Yield a temporary folder beside `out`; on success it replaces `out` (absent or an empty
    folder), on any error it is removed and `out` is left as it was."""
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.", dir=parent)
    try:
        yield tmp
        if os.path.isdir(out):
            os.rmdir(out)  # only an empty folder: the callers refuse a non-empty one up front
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
