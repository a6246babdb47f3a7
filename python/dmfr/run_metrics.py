"""A run directory's metrics as records, read from its run store (`<run_dir>/dmfr.sqlite`).

The run store (ts/store) keeps one row per (run, step, name) with the loss terms named
`terms.<name>`; a record nests them as the wire's `metrics` body does (docs/protocol.md,
"Metrics records"): {"step": 50, "loss": …, "lr": …, "samples_per_s": …, "plan_wait_s": …,
"step_time_s": …, "terms": {"L_cls": …}}, `step` counting steps completed. A directory holds
every attempt of its run (`dmfr run --resume`): a step trained again after a resume takes the
later attempt's values, as TensorBoard's purge_step does for the event files.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

from dmfr.errors import DataError

STORE_NAME = "dmfr.sqlite"
TERMS_PREFIX = "terms."
# The top-level columns first, in the order of the `metrics` message (docs/protocol.md).
TOP_LEVEL = ("loss", "lr", "samples_per_s", "plan_wait_s", "step_time_s")


def read_run_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The records of every step of the run in `run_dir`, in step order."""
    path = Path(run_dir) / STORE_NAME
    if not path.is_file():
        raise DataError(f"{run_dir}: not a run directory (no {STORE_NAME}; `dmfr run --out DIR` writes one)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"{path}: cannot open the run store: {exc}") from None
    try:
        rows = db.execute(
            "SELECT m.step, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
            "ORDER BY r.created_at, r.rowid, m.step").fetchall()
    except sqlite3.Error as exc:
        raise DataError(f"{path}: not a dmfr run store ({exc})") from None
    finally:
        db.close()
    by_step: dict[int, dict[str, float | None]] = {}
    for step, name, value in rows:  # later attempts overwrite earlier ones, step by step
        by_step.setdefault(int(step), {})[name] = value
    if not by_step:
        raise DataError(f"{path}: the run has no metrics yet")
    return [nest(step, by_step[step]) for step in sorted(by_step)]


def nest(step: int, values: dict[str, float | None]) -> dict:
    record: dict = {"step": step}
    terms: dict[str, float | None] = {}
    ordered = sorted(values.items(), key=lambda kv: (TOP_LEVEL.index(kv[0]) if kv[0] in TOP_LEVEL else len(TOP_LEVEL), kv[0]))
    for name, value in ordered:
        if name.startswith(TERMS_PREFIX):
            terms[name[len(TERMS_PREFIX):]] = value
        else:
            record[name] = value
    record["terms"] = terms
    return record


def to_jsonl(records: list[dict]) -> str:
    # a non-finite value is stored as NULL and written as null: JSON has no NaN
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)


def to_csv(records: list[dict]) -> str:
    """One row per step; columns `step`, the top-level values, then `terms.<name>` (the stored
    names, as `GET /experiments/{id}/metrics` keys them)."""
    top = [c for c in TOP_LEVEL if any(c in r for r in records)]
    top += sorted({k for r in records for k in r if k not in ("step", "terms", *TOP_LEVEL)})
    terms = sorted({t for r in records for t in r["terms"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *top, *(TERMS_PREFIX + t for t in terms)])
    for r in records:
        cell = lambda v: "" if v is None else repr(float(v))  # noqa: E731 - shortest round-trip text
        writer.writerow([r["step"], *(cell(r.get(c)) for c in top), *(cell(r["terms"].get(t)) for t in terms)])
    return out.getvalue()
