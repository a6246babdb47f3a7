"""Short in-process calls for TypeScript scripts (ts/pyhelpers.ts, through pythonia).

Each function takes and returns plain JSON text, so nothing but strings crosses the bridge and
no Python object outlives a call. Never used on the training path.
"""
from __future__ import annotations

import json
import os
import time


def inspect_dataset(path: str, limit: int | None = None) -> str:
    """`dmfr data inspect PATH --json` as a function."""
    from dmfr.data.inspection import inspect_path

    return json.dumps(inspect_path(path, limit=limit))


def embed_paths(checkpoint: str, paths_json: str, flip: bool = False) -> str:
    """Features of a few image files with a checkpoint: {"dim": D, "features": [[…], …]}."""
    from dmfr.embed import Embedder

    feats = Embedder.from_checkpoint(checkpoint).embed_paths(json.loads(paths_json), flip=flip)
    return json.dumps({"dim": int(feats.shape[1]), "features": feats.tolist()})


def pid() -> int:
    return os.getpid()


def sleep(seconds: float) -> str:
    """A call that takes a while (tests of the caller's timeout)."""
    time.sleep(seconds)
    return "done"
