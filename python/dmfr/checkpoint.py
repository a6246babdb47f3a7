"""Training checkpoints: atomic writes, retention (latest N + best K), safe loading.

A checkpoint is one `torch.save` file `step-%08d.pt` holding the training state dict agreed with
the trainer: `version` (1), `step` (the next step to run), `config`, `num_classes`, `method`
(Method.state_dict()), `optimizer`, `scheduler`, `scaler`, `rng`, `sampler`.

A write never leaves a partial file under the final name: the state goes to a temporary file in
the same directory, which is flushed and fsync'd, renamed over the final name (atomic on POSIX),
and the directory is fsync'd so the rename survives a crash. `checkpoints.json` indexes the kept
files (step, metric) and is replaced the same way. arcface_torch saves only at epoch ends with a
plain torch.save; this is what lets dmfr resume exactly from any step.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dmfr.errors import DmfrError

CHECKPOINT_VERSION = 1
INDEX_NAME = "checkpoints.json"
_STEP_NAME = re.compile(r"step-(\d+)\.pt")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call `write(binary_file)` on a temp file next to `path`, then fsync + rename + fsync dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def read_index(directory: str | os.PathLike) -> list[dict]:
    """Entries {"file", "step", "metric"} of the kept checkpoints, oldest first."""
    path = Path(directory) / INDEX_NAME
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        entries = data["checkpoints"]
        return sorted(({"file": str(e["file"]), "step": int(e["step"]), "metric": e.get("metric")}
                       for e in entries), key=lambda e: e["step"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DmfrError(f"{path}: not a valid checkpoint index: {exc}") from None


def _write_index(directory: Path, entries: list[dict]) -> None:
    text = json.dumps({"version": CHECKPOINT_VERSION, "checkpoints": entries}, indent=1) + "\n"
    atomic_write(directory / INDEX_NAME, lambda f: f.write(text.encode()))


def _retained(entries: list[dict], keep_last: int, keep_best: int, higher_is_better: bool) -> list[dict]:
    keep = {e["file"] for e in entries[-keep_last:]} if keep_last > 0 else set()
    scored = [e for e in entries if e["metric"] is not None]
    scored.sort(key=lambda e: (e["metric"] if higher_is_better else -e["metric"], e["step"]), reverse=True)
    keep |= {e["file"] for e in scored[:keep_best]}
    return [e for e in entries if e["file"] in keep]


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict, keep_last: int,
                    metric: float | None = None, keep_best: int = 0, higher_is_better: bool = True) -> Path:
    """Write `state` as `directory/step-%08d.pt` atomically, then apply retention: the latest
    `keep_last` checkpoints by step and the best `keep_best` by `metric` survive. Returns the path."""
    if keep_last < 1 and keep_best < 1:
        raise ValueError("keep_last or keep_best must be at least 1 (the new checkpoint must survive)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(step)
    atomic_write(path, lambda f: torch.save(state, f))

    entries = [e for e in read_index(directory) if e["step"] != step and (directory / e["file"]).exists()]
    entries.append({"file": path.name, "step": int(step), "metric": None if metric is None else float(metric)})
    entries.sort(key=lambda e: e["step"])
    kept = _retained(entries, keep_last, keep_best, higher_is_better)
    _write_index(directory, kept)  # the index first: it never names a deleted file
    kept_files = {e["file"] for e in kept}
    for e in entries:
        if e["file"] not in kept_files:
            (directory / e["file"]).unlink(missing_ok=True)
    return path


def checkpoint_step(path: Path) -> int | None:
    """The step in a `step-%08d.pt` name, else None."""
    match = _STEP_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a write killed mid-way left behind (`.step-*.pt.*.tmp`,
    `.checkpoints.json.*.tmp`, from `atomic_write`): only the writer (rank 0) calls this, before it
    writes, so none of them can be a write in progress. Returns what it removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for pattern in (".step-*.pt.*.tmp", f".{INDEX_NAME}.*.tmp"):
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    return sorted(removed)


def load_for_resume(path: str | os.PathLike) -> tuple[dict, Path, list[tuple[Path, str]]]:
    """Load the checkpoint to resume from; when it does not load (truncated, corrupt, gone), fall
    back to the newest older `step-*.pt` beside it that does. Returns (state, the file used, the
    files skipped with why). Raises DmfrError naming every file tried when none loads.

    The service asks for its newest recorded checkpoint; a kill or a bad disk can leave that one
    unreadable while older ones are fine, and resuming from an older step only repeats steps
    (training is a pure function of the step: docs/sampling.md)."""
    path = Path(path)
    skipped: list[tuple[Path, str]] = []
    newest = checkpoint_step(path)
    candidates = [path]
    if newest is not None and path.parent.is_dir():
        older = [p for p in path.parent.glob("step-*.pt") if (checkpoint_step(p) or -1) < newest]
        candidates += sorted(older, key=checkpoint_step, reverse=True)
    for candidate in candidates:
        try:
            return load_checkpoint(candidate), candidate, skipped
        except DmfrError as exc:
            skipped.append((candidate, str(exc)))
    raise DmfrError("no checkpoint to resume from loads: " + "; ".join(why for _, why in skipped))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The highest-step checkpoint in `directory` (from the index, else by file name)."""
    directory = Path(directory)
    entries = [e for e in read_index(directory) if (directory / e["file"]).exists()]
    if entries:
        return directory / entries[-1]["file"]
    files = sorted(directory.glob("step-*.pt"))
    return files[-1] if files else None


# torch.load(weights_only=True) admits tensors and builtins; the RNG states a trainer stores
# (numpy's legacy state tuple holds a uint32 array) also need numpy arrays and dtypes.
_RECONSTRUCT_NAMES = ("numpy.core.multiarray._reconstruct",  # as numpy 1.x pickles it
                      "numpy._core.multiarray._reconstruct")  # as numpy 2.x does


def _torch_at_least(major: int, minor: int) -> bool:
    try:
        return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (major, minor)
    except ValueError:
        return True


def _named(fn: Callable, full_name: str) -> Any:
    """`fn` allowlisted under `full_name`: torch >= 2.6 takes (fn, name) tuples; before, the
    allowlist is keyed by `__module__.__qualname__`, so a forwarding function carries the name."""
    if _torch_at_least(2, 6):
        return fn, full_name

    def alias(*args):
        return fn(*args)

    alias.__module__, alias.__name__ = full_name.rsplit(".", 1)
    alias.__qualname__ = alias.__name__
    return alias


def _numpy_safe_globals() -> list:
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed np.core
    reconstruct = core.multiarray._reconstruct
    # BUILD checks a dtype's class (numpy.dtypes.UInt32DType, ...); type(np.dtype(x)) names it on
    # every numpy (numpy.dtypes appeared in 1.25).
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.uint64, np.int64, np.int32, np.float64, np.float32,
                                          np.uint8, np.bool_)]
    # Both spellings of _reconstruct, so a checkpoint written under numpy 1.x loads under 2.x and back.
    return [*(_named(reconstruct, name) for name in _RECONSTRUCT_NAMES), np.ndarray, np.dtype, *dtypes]


@contextlib.contextmanager
def _safe_globals(allowed: list):
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):  # torch >= 2.5
        with serialization.safe_globals(allowed):
            yield
        return
    before = list(serialization.get_safe_globals())  # torch 2.4: only the process-wide allowlist
    serialization.add_safe_globals(allowed)
    try:
        yield
    finally:
        serialization.clear_safe_globals()
        serialization.add_safe_globals(before)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint (or any torch.save'd dict, e.g. an arcface_torch backbone.pth) to CPU.

    Uses `weights_only=True` (no arbitrary code from the pickle). A missing, corrupt or truncated
    file raises DmfrError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise DmfrError(f"{path}: no such checkpoint file")
    try:
        with _safe_globals(_numpy_safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, ImportError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmfrError(f"{path}: corrupt, truncated or not a checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise DmfrError(f"{path}: expected a dict of state, found {type(state).__name__}")
    return state
