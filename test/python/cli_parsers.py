"""The Python verbs' own argparse parsers, for the docs-drift test (test/ts/readme-commands.test.ts).

Reads JSON from stdin: a list of argument lists to parse. Prints JSON: `tree` (every verb and
sub-verb with its option strings) and `errors` (per argument list: null when argparse accepts
it, else argparse's message). Parsing only: no verb runs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

from dmfr.cli.__main__ import build_parser


def tree(parser: argparse.ArgumentParser) -> dict:
    flags, subs = [], {}
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its actions here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            subs.update({name: tree(sub) for name, sub in action.choices.items()})
        flags += action.option_strings
    return {"flags": sorted(flags), "subs": subs}


def parse_error(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        return err.getvalue().strip().splitlines()[-1] if exc.code else None
    return None


def main() -> None:
    parser = build_parser()
    commands = json.load(sys.stdin)
    print(json.dumps({"tree": tree(parser)["subs"], "errors": [parse_error(parser, c) for c in commands]}))


if __name__ == "__main__":
    main()
