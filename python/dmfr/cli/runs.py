"""`dmfr runs metrics RUN_DIR [--format jsonl|csv] [--out F]`: a run's metrics from its run store,
as JSON lines (what `dmfr analyze curves` reads) or CSV. Details: docs/architecture.md, "Around
the run"; the record shape: docs/protocol.md, "Metrics records"."""
from __future__ import annotations

import os
import sys

from dmfr.errors import DmfrError


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="a run directory's records: metrics as JSON lines or CSV")
    verbs = p.add_subparsers(dest="runs_verb", required=True)
    m = verbs.add_parser("metrics", help="every step's metrics of the run in RUN_DIR (its dmfr.sqlite)")
    m.add_argument("run_dir", metavar="RUN_DIR", help="a `dmfr run --out` directory")
    m.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    m.add_argument("--out", metavar="F", help="write to F instead of stdout")
    m.set_defaults(func=run_metrics)


def run_metrics(args) -> int:
    from dmfr.run_metrics import read_run_metrics, to_csv, to_jsonl

    records = read_run_metrics(args.run_dir)
    text = to_csv(records) if args.format == "csv" else to_jsonl(records)
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            raise DmfrError(f"--out {args.out}: cannot write: {exc.strerror}") from None
        print(f"{len(records)} steps → {os.path.abspath(args.out)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
