from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from dmfr.cli._output import emit_error
from dmfr.errors import DmfrError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmfr", description="dmfr Python verbs")
    sub = parser.add_subparsers(dest="verb", required=True)
    import dmfr.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"dmfr.cli.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DmfrError as exc:  # user-facing errors: one clear line, no traceback
        print(f"dmfr: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            emit_error(exc)  # the --json contract: the last stdout line is the machine-readable error
        return 2


if __name__ == "__main__":
    sys.exit(main())
