"""The generative-domain manifest: one JSON object per line in `<domain folder>/manifest.jsonl`.

Every generative sample records where it came from (issue 4, "Domains and provenance"):

    {"path": "alice/0001_pose.png", "identity": "alice", "source": "alice/0001.jpg",
     "generator": "pose", "delta": 30.0}

`path` is relative to the manifest's folder; `identity` names the real dataset's identity (its
folder name, or an integer label); `source` names the real sample the image was made from (its
path relative to the real dataset's root, or an integer index); `generator` is the generator's
name; `delta` is Δc in the generator's unit (pose: yaw degrees; quality: level 0..1). Δc = 0
marks a (real, synthetic) pair for the filter method. Optional: `strength` (the fingerprint
strength a built-in generator used). docs/domains.md is the reference; every error names the
manifest file and line.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass

from dmfr.errors import DataError

MANIFEST_NAME = "manifest.jsonl"
REQUIRED = ("path", "identity", "source", "generator", "delta")
OPTIONAL = ("strength",)


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    identity: str | int
    source: str | int
    generator: str
    delta: float
    strength: float | None = None

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v is not None or k in REQUIRED}
        return json.dumps(d, ensure_ascii=False)


def manifest_path(path: str | os.PathLike) -> str:
    """A domain folder → its manifest.jsonl; a file path is returned as is."""
    path = os.fspath(path)
    return os.path.join(path, MANIFEST_NAME) if os.path.isdir(path) else path


def _check_entry(obj: object, where: str) -> ManifestEntry:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(unknown)}")
    path = obj["path"]
    if not isinstance(path, str) or not path:
        raise DataError(f"{where}: field path: expected a non-empty string")
    norm = os.path.normpath(path)
    if os.path.isabs(path) or norm == ".." or norm.startswith(".." + os.sep):
        raise DataError(f"{where}: field path: {path!r} must be relative and inside the domain folder")
    for key in ("identity", "source"):
        v = obj[key]
        if isinstance(v, bool) or not (isinstance(v, str) and v) and not (isinstance(v, int) and v >= 0):
            raise DataError(f"{where}: field {key}: expected a non-empty string or an index ≥ 0, got {v!r}")
    if not isinstance(obj["generator"], str) or not obj["generator"]:
        raise DataError(f"{where}: field generator: expected a non-empty string")
    delta = obj["delta"]
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta):
        raise DataError(f"{where}: field delta: expected a finite number, got {delta!r}")
    strength = obj.get("strength")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0):
        raise DataError(f"{where}: field strength: expected a number ≥ 0, got {strength!r}")
    return ManifestEntry(path, obj["identity"], obj["source"], obj["generator"], float(delta),
                         None if strength is None else float(strength))


def read_manifest(path: str | os.PathLike, *, check_files: bool = True) -> list[ManifestEntry]:
    """Read and validate a manifest (a domain folder or the file itself).

    JSON Lines is the native format; a `.csv` file with a header naming the same columns is read
    too (external generators' output). With check_files, every `path` must exist next to it.
    """
    file = manifest_path(path)
    if not os.path.isfile(file):
        raise DataError(f"{file}: manifest not found")
    folder = os.path.dirname(os.path.abspath(file))
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    for line_no, obj in _records(file):
        where = f"{file}:{line_no}"
        entry = _check_entry(obj, where)
        if entry.path in seen:
            raise DataError(f"{where}: path {entry.path!r} repeats line {seen[entry.path]}")
        seen[entry.path] = line_no
        if check_files and not os.path.isfile(os.path.join(folder, entry.path)):
            raise DataError(f"{where}: image {entry.path!r} not found in {folder}")
        entries.append(entry)
    if not entries:
        raise DataError(f"{file}: manifest has no entries")
    return entries


def _records(file: str):
    """(line number, parsed object) for each non-empty line (JSONL) or data row (CSV)."""
    if file.lower().endswith(".csv"):
        with open(file, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise DataError(f"{file}:1: empty CSV, expected a header {','.join(REQUIRED)}")
            for row in reader:
                yield reader.line_num, _csv_row(row, f"{file}:{reader.line_num}")
        return
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{file}:{line_no}: invalid JSON: {exc.msg} at column {exc.colno}") from None


def _csv_row(row: dict, where: str) -> dict:
    """CSV cells are text: integers stay indices only where they are whole digits; numbers parse."""
    if None in row:
        raise DataError(f"{where}: more cells than header columns")
    out: dict = {k: v for k, v in row.items() if v is not None and v != "" or k in REQUIRED}
    for key in ("delta", "strength"):
        if key in out and out[key] is not None:
            try:
                out[key] = float(out[key])
            except ValueError:
                raise DataError(f"{where}: field {key}: expected a number, got {out[key]!r}") from None
    return out


def write_manifest(path: str | os.PathLike, entries: list[ManifestEntry]) -> str:
    """Write entries as JSON Lines (atomically); returns the file written."""
    file = manifest_path(path)
    tmp = file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            f.write(e.to_json() + "\n")
    os.replace(tmp, file)
    return file


def register(folder: str | os.PathLike, manifest: str | os.PathLike) -> str:
    """Register an external generator's output: validate `manifest` (JSONL or CSV, paths relative
    to `folder`) against the images in `folder` and write `folder/manifest.jsonl`."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder")
    src = os.fspath(manifest)
    entries = read_manifest(src, check_files=False)
    for (line_no, _), e in zip(_records(src), entries):
        if not os.path.isfile(os.path.join(folder, e.path)):
            raise DataError(f"{src}:{line_no}: image {e.path!r} not found in {folder}")
    return write_manifest(folder, entries)


# ---- CLI hooks (wired by python/dmfr/cli/data.py as `dmfr data register`) ----------------------

def add_register_arguments(parser) -> None:
    parser.add_argument("--folder", required=True, metavar="DIR", help="the external generator's output folder")
    parser.add_argument("--manifest", required=True, metavar="FILE",
                        help="its list: JSON Lines or CSV with header path,identity,source,generator,delta")


def run_register(args) -> int:
    file = register(args.folder, args.manifest)
    print(f"registered {len(read_manifest(file))} generative images: {file}")
    return 0
