#!/usr/bin/env bash
# Python tests with the checkout's venv. pytest's exit 5 ("no tests collected") is a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest test/python -q "$@"
