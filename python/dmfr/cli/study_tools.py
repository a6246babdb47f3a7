"""`python -m dmfr.cli study-tools eval-cell|report`: the Python half of `dmfr study` (the
TypeScript control plane, ts/study/, owns the study; Python only evaluates and computes the
report). Each verb prints its result as one compact JSON line on stdout (dmfr/cli/_output.py). docs/studies.md."""
from __future__ import annotations

import json
from pathlib import Path

from dmfr.cli._output import emit_json
from dmfr.errors import DataError


def register(subparsers) -> None:
    p = subparsers.add_parser("study-tools", help="internal: evaluation and report of `dmfr study`")
    verbs = p.add_subparsers(dest="study_verb", required=True)
    e = verbs.add_parser("eval-cell", help="evaluate one finished cell; writes <run-dir>/eval/metrics.json")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--eval", required=True, help="JSON file: the study's eval section")
    e.add_argument("--cache", default=None, help="directory for the procedural test sets, shared by the study's cells")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, every core)")
    e.set_defaults(func=run_eval_cell)
    r = verbs.add_parser("report", help="report.json, report.md and figures from the stored cell metrics")
    r.add_argument("study_dir")
    r.set_defaults(func=run_report)


def run_eval_cell(args) -> int:
    from dmfr.analysis.study_eval import evaluate_cell, write_json

    if args.threads < 0:
        raise DataError(f"--threads: expected ≥ 0, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    try:
        spec = json.loads(Path(args.eval).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{args.eval}: cannot read the eval spec: {exc}") from None
    result = evaluate_cell(args.run_dir, args.checkpoint, spec, cache_dir=args.cache)
    out = Path(args.run_dir) / "eval" / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    emit_json({"metrics": str(out), "n": len(result["metrics"])})
    return 0


def run_report(args) -> int:
    from dmfr.analysis.study_report import summary_line, write_report

    report = write_report(args.study_dir)
    emit_json(summary_line(Path(args.study_dir), report))
    return 0
