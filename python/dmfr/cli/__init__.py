"""`python -m dmfr.cli VERB …`: the Python verbs behind the `dmfr` command.

Every module in this package that defines `register(subparsers)` adds its own verb(s); the
TypeScript CLI forwards verbs it does not handle itself (data, eval, analyze, model, export,
embed…) here. Each `register` calls `parser.set_defaults(func=handler)`; a handler returns the
process exit code.
"""
